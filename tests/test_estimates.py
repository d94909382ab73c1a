"""Stage time estimates (helpers.pipeline.estimates) with the device's rate faked, so each check is exact.

The encoder layer the estimates time on the device (`estimates.layer_seconds`) is replaced by one that answers
from a fixed rate per device (and for int8); the tests then check that the arithmetic scales as the work does, that the GPU path gives a
GPU's figures, and that estimates.json is written and merged. How close the estimates come to real runs
is measured, not tested: docs/results.md, "Stage time estimates".
"""
import json
import os

import numpy as np
import pytest
from transformers import BertConfig, DistilBertConfig

from helpers.core import precision
from helpers.pipeline import estimates
from helpers.runs import layout
from helpers.runs.config import resolve_params
from helpers.runs.run_folder import Run

CPU = precision.Device("cpu", "pretend CPU")
T4 = precision.Device("cuda", "Tesla T4", (7, 5))
HUB_SHAPES = {"bert-base-uncased": BertConfig(), "distilbert-base-uncased": DistilBertConfig()}  # their real sizes


@pytest.fixture
def rates(monkeypatch):
    """Fake device rates (FLOP/s of a layer's forward pass): {device kind or 'int8': rate}, changeable by the test;
    training passes take three times the forward FLOPs, at the same rate."""
    chosen = {"cpu": 100e9, "cuda": 40e12, "int8": 170e9}

    def layer_seconds(shape, rows, length, mixed="no", device="cpu", backward=False, int8=False, repeats=3):
        flops = shape.forward_flops((np.array([float(rows)]), np.array([float(length)])), layers=1)
        return (3 if backward else 1) * flops / chosen["int8" if int8 else device]

    monkeypatch.setattr(estimates, "layer_seconds", layer_seconds)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # an idle machine, whatever runs beside the tests
    real_config = estimates.model_config
    monkeypatch.setattr(estimates, "model_config", lambda name: HUB_SHAPES.get(name) or real_config(name))
    return chosen


def make_run(tmp_path, profile="quick", **overrides):
    """An empty run folder (its review lengths come from the committed sample, drawn to the sizes asked), in fp32
    unless asked otherwise, so no test times bf16 against fp32 on this CPU."""
    params = resolve_params(profile, {"precision": "fp32", **overrides})
    folder = tmp_path / f"{profile}-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    return Run(folder, profile, params)


def parts(run, stage, device=CPU):
    return estimates.stage_parts(estimates.Work(run, device), stage)[0]


# --- the arithmetic scales as the work does ------------------------------------------------------------------

def test_twice_the_reviews_about_twice_the_training(tmp_path, rates):
    one, two = (parts(make_run(tmp_path, n_train=n, min_steps=0), "train")["training"] for n in (500, 1000))
    assert two / one == pytest.approx(2.0, rel=0.05)


def test_twice_the_epochs_twice_the_training_and_min_steps_adds_epochs(tmp_path, rates):
    one = parts(make_run(tmp_path, n_train=400, min_steps=0), "train")["training"]
    assert parts(make_run(tmp_path, n_train=400, min_steps=0, epochs=2), "train")["training"] == pytest.approx(2 * one)
    # 360 training reviews in batches of 8 are 45 steps an epoch: min_steps 200 asks for 5 epochs (optimization.planned_epochs)
    assert parts(make_run(tmp_path, n_train=400, min_steps=200), "train")["training"] == pytest.approx(5 * one)


def test_a_faster_device_shortens_the_device_work_only(tmp_path, rates):
    run = make_run(tmp_path)
    slow = parts(run, "train")
    rates["cpu"] *= 2
    fast = parts(run, "train")
    # the FLOPs' share halves; the per-step costs (Python, AdamW) and the fixed ones stay
    assert fast["training"] < slow["training"] and fast["training"] > slow["training"] / 2
    assert fast["checkpoints"] == slow["checkpoints"] and fast["kernel start and imports"] == slow["kernel start and imports"]


def test_forward_flops_follow_the_model_and_the_tokens():
    small, large = estimates.shape_of(BertConfig(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)), \
        estimates.shape_of(BertConfig())
    one = (np.array([8.0]), np.array([128.0]))
    # the weights term: 2 x layers x (4h² + 2hi) x tokens; bert-base's encoder has 8x MiniLM-L6's weights
    assert large.weights == 8 * small.weights == 12 * (4 * 768 ** 2 + 2 * 768 * 3072)
    assert large.forward_flops(one) == pytest.approx(8 * 128 * (2 * large.weights + 4 * 12 * 768 * 128))
    assert large.forward_flops(one, layers=1) == pytest.approx(large.forward_flops(one) / 12)
    assert small.forward_flops((np.array([8.0]), np.array([256.0]))) > 2 * small.forward_flops(one)  # attention: n²
    assert abs(large.parameters - 109.5e6) < 1e6  # bert-base-uncased: 110 M


def test_batches_pad_to_the_longest_review_rounded_to_8():
    rows, padded = estimates.batches([5, 30, 17, 600, 9], batch_size=2, max_length=256)
    assert rows.tolist() == [2, 2, 1] and padded.tolist() == [16, 32, 256]


def test_checkpoints_follow_the_loops_cadence():
    from helpers.train.trainer import TrainSettings

    settings = TrainSettings.from_params(resolve_params("quick", {"checkpoint_every": 100}))
    # 225 steps in one epoch: steps 100 and 200, none at the end of the last epoch
    assert estimates.checkpoints_written(225, 1, settings, step_seconds=1.0, validation_seconds=0.0) == 2
    assert estimates.checkpoints_written(225, 2, settings, step_seconds=1.0, validation_seconds=0.0) == 5  # + epoch 1's end
    by_time = TrainSettings.from_params(resolve_params("quick", {"checkpoint_minutes": 20}))
    # 171 steps of 16 s (45.6 minutes): one at 20 minutes, one at 40, none after the last epoch
    assert estimates.checkpoints_written(57, 3, by_time, step_seconds=16.0, validation_seconds=5.0) == 2
    assert estimates.checkpoints_written(225, 1, by_time, step_seconds=0.5, validation_seconds=0.0) == 0


def test_lengths_are_exact_once_the_run_is_tokenized(tmp_path, rates):
    from helpers.pipeline import stages
    from helpers.pipeline.checks import open_run

    run = open_run("smoke", tmp_path / "smoke")
    before = estimates.Work(run, CPU).lengths
    assert len(before["train"]) == 60 and len(before["val"]) == 20 and len(before["test"]) == 40
    stages.data_stage(run)
    stages.tokenize_stage(run)
    after = estimates.Work(run, CPU).lengths
    from helpers.tokens.tokens import load_tokenized

    tokenized = load_tokenized(run.dir / "tokenize")
    assert after["train"].tolist() == list(tokenized["train"]["full_length"])
    assert len(after["unlabelled"]) == run.params.n_unlabelled and len(after["short"]) == 1000


# --- the GPU path ----------------------------------------------------------------------------------------------

def test_subset_on_a_t4_gives_gpu_figures_and_its_cpu_part_does_not_move_with_the_gpu(tmp_path, rates):
    run = make_run(tmp_path, "subset", precision="auto")
    work = estimates.Work(run, T4)
    assert work.mixed == "fp16" and work.teacher.layers == 12 and work.student.layers == 6
    train = estimates.estimate(run, "train", work=work)
    assert train["device"] == "this GPU (Tesla T4)" and train["precision"] == "fp16"
    # 900 reviews x 3 epochs of bert-base: a T4's minute, not a CPU's hours
    assert 10 < train["parts"]["training"] < 300
    cpu_part = estimates.estimate(run, "distill_cpu", work=work)["seconds"]
    rates["cuda"] *= 4
    faster = estimates.Work(run, T4)
    assert estimates.estimate(run, "distill_cpu", work=faster)["seconds"] == pytest.approx(cpu_part)
    assert estimates.estimate(run, "train", work=faster)["parts"]["training"] < train["parts"]["training"] / 2


def test_the_same_subset_on_the_cpu_takes_far_longer(tmp_path, rates):
    run = make_run(tmp_path, "subset")
    on_gpu = parts(run, "train", T4)["training"]
    assert parts(run, "train", CPU)["training"] > 50 * on_gpu


# --- what the notebooks call ------------------------------------------------------------------------------------

def test_announce_prints_and_merges_estimates_json(tmp_path, rates, capsys):
    run = make_run(tmp_path)
    estimates.announce(run, "train", CPU)
    printed = capsys.readouterr().out
    assert printed.startswith("train: about ") and "this CPU" in printed and "1,800 reviews x" in printed
    assert len(printed.strip().splitlines()) == 2
    estimates.announce(run, "distill", CPU)
    assert "distill_cpu: about" in capsys.readouterr().out
    stored = json.loads((run.dir / layout.ESTIMATES_FILE).read_text())
    assert list(stored) == ["train", "distill", "distill_cpu"]
    for entry in stored.values():
        assert entry["seconds"] == pytest.approx(sum(entry["parts"].values()), abs=0.1 * len(entry["parts"]))
    assert stored["distill"]["parts"]["CPU part"] == pytest.approx(stored["distill_cpu"]["seconds"], abs=0.1)
    assert sorted(p.name for p in run.dir.iterdir()) == [layout.ESTIMATES_FILE]  # written atomically: no temporary files
    rates["cpu"] /= 2
    estimates.announce(run, "train", CPU)  # a new estimate replaces the stage's own entry, keeps the others
    again = json.loads((run.dir / layout.ESTIMATES_FILE).read_text())
    assert again["train"]["seconds"] > stored["train"]["seconds"] and again["distill"] == stored["distill"]


def test_measured_records_a_parts_seconds_beside_its_estimate(tmp_path, rates):
    run = make_run(tmp_path)
    estimates.announce(run, "distill", CPU)
    with estimates.measured(run, "distill_cpu"):
        pass
    entry = estimates.read_estimates(run.dir)["distill_cpu"]
    assert entry["measured_seconds"] == 0.0 and entry["seconds"] > 0


def test_a_busy_cpu_lengthens_the_fixed_cpu_work_but_not_the_timed_work(tmp_path, rates, monkeypatch):
    run = make_run(tmp_path)
    idle = parts(run, "evaluate")
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0 * os.cpu_count(),) * 3)  # 3 runnable processes per core
    busy = parts(run, "evaluate")
    assert busy["kernel start and imports"] == pytest.approx(3 * idle["kernel start and imports"])
    assert busy["TF-IDF baseline"] == pytest.approx(3 * idle["TF-IDF baseline"])
    assert busy["predictions"] == pytest.approx(idle["predictions"])  # timed on the device as it is now


def test_an_unknown_stage_is_refused_by_name(tmp_path, rates):
    with pytest.raises(ValueError, match="no estimate for stage 'predict'"):
        parts(make_run(tmp_path), "predict")


def test_the_real_timings_run_here(tmp_path):
    """No fake: an encoder layer timed on this CPU, training, predicting and in int8, answers a plausible rate."""
    work = estimates.Work(make_run(tmp_path, "smoke"), CPU)
    for rate in (work.train_rate, work.predict_rate, work.cpu_rate, work.int8_rate):
        assert 1e6 < rate < 1e14
