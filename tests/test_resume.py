"""Exactness: a training run killed with SIGKILL at several points and resumed ends bit for bit where an
unbroken run ends (weights, history and metrics.json), on the CPU. Also: two runs of one profile agree."""
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.pipeline import stages
from helpers.pipeline.checks import open_run

pytestmark = pytest.mark.slow
CHILD = Path(__file__).parent / "scripts" / "train_until_killed.py"
# smoke: 60 training reviews in batches of 8 = 8 optimizer steps an epoch, 2 epochs; a checkpoint every 3 steps
OVERRIDES = {"checkpoint_every": 3}
OUTPUTS = ("train/model/model.safetensors", "train/history.json", "evaluate/metrics.json")


def _child(run_dir, *points):
    command = [sys.executable, str(CHILD), str(run_dir), *filter(None, points)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A smoke run folder whose data and tokenize stages are done, and a copy trained without a break."""
    base = tmp_path_factory.mktemp("resume")
    run = open_run("smoke", base / "prepared", OVERRIDES)
    stages.data_stage(run)
    stages.tokenize_stage(run)
    unbroken = base / "unbroken"
    shutil.copytree(run.dir, unbroken)
    code, out = _child(unbroken)
    assert code == 0, out[-3000:]
    return run.dir, unbroken


def test_killed_four_times_and_resumed_ends_bitwise_identical(prepared, tmp_path):
    prepared_dir, unbroken = prepared
    run_dir = tmp_path / "run"
    shutil.copytree(prepared_dir, run_dir)
    # each process is killed at its own point; the next one resumes from what the last left behind
    chain = [
        ("forward:5", None),  # mid-step, epoch 1 batch 5: step-3 is on disk
        ("save:1", "resuming from checkpoint step-00000003: epoch 1, 3 batch(es)"),  # killed while writing step-6
        ("validate:1", "resuming from checkpoint step-00000003: epoch 1, 3 batch(es)"),  # killed between epochs
        ("forward:3", "resuming from checkpoint step-00000006: epoch 1, 6 batch(es)"),  # epoch 2 batch 1
        (None, "resuming from checkpoint step-00000008: epoch 2, 0 batch(es)"),  # runs to the end
    ]
    for point, expected in chain:
        code, out = _child(run_dir, point)
        assert code == (-signal.SIGKILL if point else 0), f"{point}: exit {code}\n{out[-3000:]}"
        if expected:
            assert expected in out, out[-3000:]
        if point == "save:1":
            assert list((run_dir / "train" / "checkpoints").glob(".step-00000006.*.tmp")), "the kill hit a save"
    for name in OUTPUTS:
        assert (run_dir / name).read_bytes() == (unbroken / name).read_bytes(), name


def test_an_fp16_run_killed_at_a_checkpoint_and_rerun_ends_bitwise_identical(tmp_path):
    """Emulated fp16, its loss scale halved at step 2 by an overflow: the checkpoint of step 3 must bring back the
    scale and its growth tracker, or the rerun scales its losses otherwise and its history differs."""
    run = open_run("smoke", tmp_path / "prepared", {**OVERRIDES, "precision": "fp16"})
    stages.data_stage(run)
    stages.tokenize_stage(run)
    unbroken = tmp_path / "unbroken"
    shutil.copytree(run.dir, unbroken)
    for run_dir, points in ((unbroken, ["overflow:2"]), (run.dir, ["overflow:2", "save:2"]), (run.dir, [])):
        code, out = _child(run_dir, *points)
        assert code == (-signal.SIGKILL if "save:2" in points else 0), out[-3000:]
    assert "resuming from checkpoint step-00000003: epoch 1, 3 batch(es)" in out, out[-3000:]
    steps = json.loads((unbroken / "train" / "history.json").read_text())["steps"]
    assert [s["skipped"] for s in steps[:3]] == [False, True, False] and steps[1]["scale"] == 32768
    for name in OUTPUTS:
        assert (run.dir / name).read_bytes() == (unbroken / name).read_bytes(), name


def test_same_profile_and_seed_give_identical_metrics(tmp_path):
    """Two runs of every stage, in separate run folders of one process, agree to the byte."""
    results = []
    for name in ("first", "second"):
        run = open_run("smoke", tmp_path / name)
        for stage in (stages.data_stage, stages.tokenize_stage, stages.train_stage, stages.evaluate_stage):
            stage(run)
        results.append([(run.dir / path).read_bytes() for path in OUTPUTS])
    assert results[0] == results[1]


def _files(run_dir, folders=("train", "evaluate", "distill")):
    return {path.relative_to(run_dir): path.read_bytes() for folder in folders
            for path in sorted((run_dir / folder).rglob("*")) if path.is_file()}


def _without_timings(json_bytes):
    """comparison.json or baseline.json without what a clock measured: each model's CPU reviews/s."""
    measured = json.loads(json_bytes)
    for row in [*measured.get("models", {}).values(), measured.get("footprint", {})]:
        row.pop("reviews_per_s", None)
    return measured


def test_rerunning_evaluate_and_distill_leaves_every_stage_file_byte_identical(tmp_path):
    """A stage writes only its own folder and computes the same from the same inputs: evaluate and distill run
    again on a finished run leave train/, evaluate/ and distill/ as they were, to the byte (timings aside: the CPU
reviews/s of the comparison and of the baseline's row, which the evaluate stage measures)."""
    run = open_run("smoke", tmp_path / "run", {"tracker": "none"})
    for stage in stages.STAGE_FUNCTIONS.values():
        stage(run)
    before = _files(run.dir)
    stages.evaluate_stage(run)
    stages.distill_stage(run)
    after = _files(run.dir)
    for timed in (Path("distill") / "comparison.json", Path("evaluate") / "baseline.json"):
        assert _without_timings(after.pop(timed)) == _without_timings(before.pop(timed))
    assert sorted(after) == sorted(before)
    assert [name for name in before if after[name] != before[name]] == []
