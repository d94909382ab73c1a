"""All five stages on 2 CPU processes (gloo), launched the way the README tells GPU users to, in fp32 and in fp16."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.core import models, sentiment
from helpers.pipeline import stages
from helpers.pipeline.checks import open_run
from helpers.runs.run_folder import load_run
from helpers.tokens import tokens
from helpers.train import prediction
from helpers.train.stepper import skipped_steps

pytestmark = pytest.mark.slow

FILLER = "the film story actor scene plot music camera ending script".split()


def _reviews(n, seed):
    """Reviews whose label one word gives away, so the tiny model learns them in a few epochs."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(5, 40)))
        words.insert(int(rng.integers(0, len(words))), "excellent" if i % 2 else "terrible")
        texts.append(" ".join(words))
    return pd.DataFrame({"text": texts, "label": [i % 2 for i in range(n)]})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A run folder with data and tokenize done, and the parameters that made it."""
    root = tmp_path_factory.mktemp("multiprocess")
    data_dir = root / "data"
    data_dir.mkdir()
    _reviews(320, 0).to_parquet(data_dir / "train.parquet")
    _reviews(64, 1).to_parquet(data_dir / "test.parquet")
    overrides = {"data": str(data_dir), "n_train": 320, "n_test": 64, "val_fraction": 0.4, "epochs": 4,
                 "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0, "checkpoint_every": 10,
                 "keep_checkpoints_at_end": True}
    run = open_run("smoke", root / "one", overrides)
    stages.data_stage(run)
    stages.tokenize_stage(run)
    shutil.copytree(root / "one", root / "prepared")
    return root, overrides


def _fresh_copy(root, name):
    shutil.copytree(root / "prepared", root / name)
    return root / name


def _launch_every_stage(run_dir, overrides, port):
    """`accelerate launch --multi_gpu --num_processes 2 -m helpers.run smoke` through all five stages; its output."""
    params = [arg for name, value in overrides.items() for arg in ("-p", name, str(value))]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "helpers.run", "smoke", "--run-dir", str(run_dir), "--stages", ",".join(stages.STAGE_FUNCTIONS),
               *params]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MASTER_PORT": str(port)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "2 processes run the stages" in output
    # the distill stage loads the student the first process wrote, once it is there
    assert json.loads((run_dir / "distill" / "metrics.json").read_text())["accuracy"] >= 0
    assert (run_dir / "distill" / "comparison.json").exists()
    return output


def test_two_processes_train_like_one_with_the_same_global_batch(prepared):
    root, overrides = prepared
    _fresh_copy(root, "two")
    one = stages.train_stage(open_run("smoke", root / "one", overrides))
    output = _launch_every_stage(root / "two", overrides, 29531)

    # only the first process writes: each checkpoint is saved and reported once, no half-written leftovers
    saved = re.findall(r"checkpoint (step-\d+) saved", output.split("] evaluate ...")[0])  # the train stage's
    assert saved and len(saved) == len(set(saved)), saved
    folder = root / "two" / "train" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (root / "one" / "train" / "checkpoints").iterdir())
    state = torch.load(folder / saved[-1] / "trainer_state.pt", weights_only=True)
    assert len(state["rng"]) == 2  # each process's random state, for an exact resume

    history_one = one.tables["epochs"]
    history_two = json.loads((root / "two" / "train" / "history.json").read_text())
    steps_one = json.loads((root / "one" / "train" / "history.json").read_text())["steps"]
    # the same optimizer steps on the same learning-rate schedule
    assert [s["lr"] for s in history_two["steps"]] == pytest.approx([s["lr"] for s in steps_one])
    accuracy_one = float(history_one["accuracy"].iloc[-1])
    accuracy_two = history_two["epochs"][-1]["accuracy"]
    assert accuracy_one > 0.8, "the 1-process run must learn, or the comparison says nothing"
    assert abs(accuracy_two - accuracy_one) <= 0.01, (accuracy_one, accuracy_two)

    # the evaluate stage: both processes predict their share of each set, the first gathers every review once
    run_two = load_run(root / "two")
    test = tokens.load_tokenized(run_two.require("tokenize"))["test"]
    logits = prediction.predict_logits(models.load_trained(run_two.require("train", "model")), test,
                                       tokens.load_saved_tokenizer(run_two.require("tokenize")), 16)
    temperature = json.loads((root / "two" / "evaluate" / "calibration.json").read_text())["temperature"]
    predicted = pd.read_parquet(root / "two" / "evaluate" / "predictions.parquet")["prob_positive"].to_numpy()
    np.testing.assert_allclose(predicted, sentiment.positive_probability(logits, temperature), atol=1e-5)


def test_the_train_notebook_hands_several_gpus_to_notebook_launcher(prepared, monkeypatch):
    """The plumbing only (no GPUs here): the launcher gets train_stage and the process count, and the
    notebook's result is rebuilt from the files the launched processes wrote."""
    import accelerate

    root, overrides = prepared
    run = open_run("smoke", _fresh_copy(root, "launched"), overrides)
    launches = []

    def one_process_for_all(function, args, num_processes):
        launches.append((function, num_processes))
        function(*args)

    monkeypatch.setattr(accelerate, "notebook_launcher", one_process_for_all)
    result = stages.launch_train(run, num_processes=2)
    assert launches == [(stages.train_stage, 2)]
    history = json.loads((run.dir / "train" / "history.json").read_text())
    assert list(result.tables["epochs"]["accuracy"]) == [e["accuracy"] for e in history["epochs"]]
    assert result.values["parameters"] > 0 and (run.dir / "train" / "loss_curve.png").exists()


def test_two_processes_run_every_stage_in_emulated_fp16(prepared):
    """A T4 user's path on two GPUs: fp16 with its loss scaler in every process, through distillation."""
    root, overrides = prepared
    run_dir = root / "fp16"
    _launch_every_stage(run_dir, {**overrides, "precision": "fp16", "epochs": 2}, 29532)
    for stage in ("train", "distill"):
        history = json.loads((run_dir / stage / "history.json").read_text())
        assert history["precision"] == "fp16"
        steps = history["steps"]
        assert all(np.isfinite(s["loss"]) and s["scale"] > 0 for s in steps) and skipped_steps(steps) < len(steps) / 4
