"""Run the train and evaluate stages of a run folder, killing this process with SIGKILL at a chosen point.

    python tests/scripts/train_until_killed.py RUN_DIR [POINT:N ...]

POINT is where the N-th event of this process sends SIGKILL to itself (not an exception: nothing
gets to clean up, exactly as when Colab drops a runtime):
    forward   the N-th training forward pass, in the middle of an optimizer step
    save      the N-th checkpoint save, after its weights are written and before its optimizer state
    validate  the N-th validation, between two epochs
One more POINT is not a kill: overflow:N makes the N-th training forward pass return infinite logits, a step
that fp16's loss scaler skips, halving its scale. Without POINT the stages run to the end. Used by
tests/test_resume.py.
"""
import math
import os
import signal
import sys

from helpers.pipeline import stages
from helpers.runs.run_folder import load_run
from helpers.train import checkpoint_files, stepper, trainer


def kill_on(module, name, count, only=lambda *args: True):
    real = getattr(module, name)
    seen = {"n": 0}

    def wrapper(*args, **kwargs):
        seen["n"] += bool(only(*args))
        if seen["n"] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(module, name, wrapper)


def overflow_on(count):
    real, seen = stepper.forward, {"n": 0}

    def forward(model, batch):
        seen["n"] += model.training
        logits = real(model, batch)
        return logits * math.inf if model.training and seen["n"] == count else logits

    stepper.forward = forward


def main(run_dir, *points):
    for point in points:
        event, count = point.split(":")
        if event == "overflow":
            overflow_on(int(count))
            continue
        target = {"forward": (stepper, "forward", lambda model, batch: model.training),
                  "save": (checkpoint_files, "_save_trainer_state"),
                  "validate": (trainer, "validation_scores")}[event]
        kill_on(*target[:2], int(count), *target[2:])
    run = load_run(run_dir)
    stages.train_stage(run)
    stages.evaluate_stage(run)


if __name__ == "__main__":
    main(*sys.argv[1:])
