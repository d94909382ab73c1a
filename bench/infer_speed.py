"""CPU inference: the fine-tuned teacher against the distilled student, in fp32 and int8.

    python bench/infer_speed.py runs/quick               # a finished `quick` run: 1,000 test reviews
    python bench/infer_speed.py RUN_DIR --size tiny      # seconds: the first 64 test reviews (tests run it on smoke)

Each model predicts every test review of the run on the CPU, in fp32 (the int8 student:
linear layers dynamically quantized to int8), in torch.inference_mode with length-sorted
batches, exactly as the distill stage's comparison does; reviews/s and test accuracy come from
the same pass. The three are measured one after the other in this process, so the ratios to
the teacher are what to read: bare times move with the machine's load.

Results go to bench/results/infer_speed.json (git-ignored) and print as a table.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers.core import models
from helpers.core.files import write_json  # noqa: E402
from helpers.core.int8 import quantize_int8
from helpers.runs.run_folder import load_run  # noqa: E402
from helpers.tokens import tokens
from helpers.train import prediction

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"full": None, "tiny": 64}  # test reviews predicted: all, or the first 64


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder whose train and distill stages have finished")
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--out", default=str(RESULTS / "infer_speed.json"))
    args = parser.parse_args(argv)
    run = load_run(args.run_dir)
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    test = tokens.load_tokenized(run.require("tokenize"))["test"]
    if SIZES[args.size]:
        test = test.select(range(min(SIZES[args.size], len(test))))
    student = models.load_trained(run.require("distill", "model"))
    contenders = {"teacher": models.load_trained(run.require("train", "model")), "student": student,
                  "student_int8": quantize_int8(student)}
    labels = np.asarray(test["labels"])
    figures = {}
    for name, model in contenders.items():
        print(f"predicting: {name} ...", flush=True)
        logits, seconds = prediction.timed_cpu_logits(model, test, tokenizer, run.params.eval_batch_size)
        figures[name] = {"reviews_per_s": len(test) / seconds, "seconds": seconds,
                         "accuracy": float((logits.argmax(-1) == labels).mean()),
                         "params": models.count_parameters(model) if name != "student_int8" else None}
    teacher_speed = figures["teacher"]["reviews_per_s"]
    results = {
        "run": str(run.dir), "size": args.size, "reviews": len(test), "threads": torch.get_num_threads(),
        "student_vs_teacher": figures["student"]["reviews_per_s"] / teacher_speed,
        "int8_vs_teacher": figures["student_int8"]["reviews_per_s"] / teacher_speed,
        "teacher_accuracy": figures["teacher"]["accuracy"], "student_accuracy": figures["student"]["accuracy"],
        "int8_accuracy": figures["student_int8"]["accuracy"], "models": figures,
    }
    write_json(args.out, results)
    table = pd.DataFrame(figures).T.drop(columns="params")
    table["speed vs teacher"] = table["reviews_per_s"] / teacher_speed
    print(f"{len(test)} test reviews of {run.dir}, CPU, {results['threads']} threads\n{table.round(3).to_string()}")
    print(f"written to {args.out}")
    return results


if __name__ == "__main__":
    main()
