"""bench/gpu_check.py's dry run (every part at tiny sizes on the CPU), the payload it travels with
(bench/gpu_payload.py) and the timing arithmetic both GPU loop parts rest on (bench/loop_timing.py)."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from helpers.core.files import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))  # bench/ is no installed package: import it from the checkout
from bench import gpu_check_loops, gpu_check_stages, gpu_payload, loop_timing  # noqa: E402
from helpers.core.files import read_json, write_json  # noqa: E402

PARTS = ("fp16", "bert-base", "oom", "full-data")
RECORD_KEYS = {"part", "dry_run", "passed", "seconds", "notes", "error", "checks", "device", "packages", "commit", "date"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run, as the suite runs it: its exit status, what it printed and every part's JSON."""
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("work")
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "gpu_check.py"), "--dry-run", "--out", str(out),
                           "--work", str(work)], check=False, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    return done, {part: read_json(out / f"{part}.json") for part in PARTS if (out / f"{part}.json").exists()}


@pytest.mark.slow
def test_the_dry_run_writes_every_part_and_says_what_it_leaves_out(dry_run):
    done, records = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert set(records) == set(PARTS)
    for part, record in records.items():
        assert RECORD_KEYS <= set(record), part
        assert record["part"] == part and record["dry_run"] and record["passed"] and record["error"] is None
    for note in ("note: fp16 on the CPU is the emulation",
                 "note: fp16 needs CUDA: on the CPU the runs train in fp32", "note: compile uses the eager backend on the CPU",
                 "note: the memory cap needs CUDA"):
        assert note in done.stdout
    assert records["oom"]["notes"] and records["fp16"]["notes"] and records["bert-base"]["notes"]


@pytest.mark.slow
def test_the_dry_run_fp16_part_runs_every_stage_with_finite_losses(dry_run):
    record = dry_run[1]["fp16"]
    first, bf16 = record["fp16"], record["bf16"]  # fp16: the CPU's emulation
    assert set(first["stage_seconds"]) == {"data", "tokenize", "train", "evaluate", "distill"}
    assert set(bf16["stage_seconds"]) == {"data", "tokenize", "train", "evaluate"}
    assert all(first["finished"].values()) and all(bf16["finished"].values())
    for run in (first, bf16):
        for found in run["losses"].values():
            assert found["finite"] and np.isfinite([found["first"], found["last"]]).all() and found["steps"] > 0
    assert set(first["losses"]) == {"train", "distill"} and set(bf16["losses"]) == {"train"}
    assert set(first["loss_scaler"]) == {"train", "distill"} and bf16["loss_scaler"] == {}  # a GradScaler in fp16 alone
    for stage, scaler in first["loss_scaler"].items():  # one scaler update a step
        assert scaler["steps"] == first["losses"][stage]["steps"] and scaler["final_scale"] > 0
    checks = record["checks"]
    assert checks["all_stages_finished"] and checks["losses_finite"]
    assert checks["loss_scale_above_0"] and checks["steps_not_all_skipped"]  # checked by the emulation
    low, high = bf16["teacher"]["accuracy_ci95"]
    assert checks["teacher_inside_bf16_interval"] == (low <= first["teacher"]["accuracy"] <= high)


@pytest.mark.slow
def test_the_dry_run_bert_base_part_races_ours_and_the_trainer(dry_run):
    record = dry_run[1]["bert-base"]
    runs = record["runs"]
    assert [(r["loop"], r["group_by_length"], r["compile"]) for r in runs] == [
        ("ours", True, False), ("ours", False, False), ("trainer", True, False), ("trainer", False, False),
        ("ours", True, True)]
    for run in runs:
        assert run["precision"] == "fp32" and run["reviews"] == record["size"]["reviews"] == 64
        assert run["reviews_per_s"] > 0 and run["setup_s"] > 0 and 0 <= run["mfu"] < 1 and run["losses_finite"]
        assert 0 <= run["padding_share"] < 1 and run["peak_memory_mb"] > 0
    rates = {(r["loop"], r["group_by_length"]): r["reviews_per_s"] for r in runs if not r["compile"]}
    ratios = record["ours_vs_trainer"]["fp32"]
    assert ratios["trainer grouped"] == pytest.approx(rates["ours", True] / rates["trainer", True])
    assert ratios["trainer"] == pytest.approx(rates["ours", True] / rates["trainer", False])
    assert record["checks"] == {"losses_finite": True, "every_review_trained": True}


@pytest.mark.slow
def test_the_dry_run_oom_part_halves_a_batch_and_keeps_its_loss(dry_run):
    record = dry_run[1]["oom"]
    assert record["uncapped"]["forward_reviews"] == [32]
    assert record["capped"]["forward_reviews"] == [32, 16, 16]  # refused whole, then in two halves
    assert record["pieces"] == [16, 16] and len(record["capped"]["losses"]) == 1
    assert "halving to 16" in record["capped"]["halving_messages"][0]
    assert record["loss_difference"] <= record["loss_tolerance_relative"] * record["uncapped"]["losses"][0]
    assert all(record["checks"].values())


@pytest.mark.slow
def test_the_dry_run_full_data_part_scores_the_teacher_beside_the_baseline(dry_run):
    record = dry_run[1]["full-data"]
    assert record["reviews"]["train"] + record["reviews"]["val"] == 120 and record["reviews"]["test"] == 60
    assert record["params"]["n_train"] is None and record["params"]["data"].endswith("imdb")
    assert set(record["stage_seconds"]) == {"data", "tokenize", "train", "evaluate", "distill"}
    for model in ("teacher", "baseline", "student"):
        low, high = record[model]["accuracy_ci95"]
        assert low <= record[model]["accuracy"] <= high
    assert record["baseline"]["c"] in record["baseline"]["c_grid"] == [10, 30, 100]
    assert set(map(float, record["baseline"]["val_accuracy_by_c"])) == {10.0, 30.0, 100.0}
    assert record["checks"] == {"all_stages_finished": True, "losses_finite": True}


def test_unknown_parts_are_refused_before_anything_runs():
    from bench import gpu_check

    with pytest.raises(SystemExit, match="unknown gpu; choose from fp16, bert-base, oom, full-data"):
        gpu_check.main(["--dry-run", "--part", "fp16,gpu"])
    with pytest.raises(SystemExit, match="--payload is needed"):
        gpu_check.main(["--part", "oom"])


def test_a_packed_model_unpacks_to_its_float16_weights_in_float32(tmp_path, tiny_teacher, tiny_tokenizer):
    tiny_teacher.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    gpu_payload.pack_model(tmp_path / "model", tmp_path / "packed")
    assert not (tmp_path / "packed" / "model.safetensors").exists()
    folder = gpu_payload.unpack_model(tmp_path / "packed", tmp_path / "unpacked")
    original, unpacked = load_file(tmp_path / "model" / "model.safetensors"), load_file(folder / "model.safetensors")
    assert set(unpacked) == {name for name, array in original.items() if np.issubdtype(array.dtype, np.floating)}
    for name, array in unpacked.items():
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, original[name].astype(np.float16).astype(np.float32))
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert AutoModelForSequenceClassification.from_pretrained(folder).config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(folder)("a fine film")["input_ids"] == tiny_tokenizer("a fine film")["input_ids"]


def test_an_unpacked_model_that_does_not_match_its_checksum_is_refused(tmp_path, tiny_teacher):
    tiny_teacher.save_pretrained(tmp_path / "model")
    gpu_payload.pack_model(tmp_path / "model", tmp_path / "packed")
    index = read_json(tmp_path / "packed" / gpu_payload.WEIGHTS_INDEX)
    write_json(tmp_path / "packed" / gpu_payload.WEIGHTS_INDEX, {**index, "sha256": "0" * 64})
    with pytest.raises(RuntimeError, match="do not match their checksum"):
        gpu_payload.unpack_model(tmp_path / "packed", tmp_path / "unpacked")
    assert not (tmp_path / "unpacked").exists()


def test_reviews_are_recompressed_whole_and_the_size_limit_is_enforced(tmp_path, sample):
    import pyarrow.parquet as pq

    gpu_payload.write_reviews(sample["test"], tmp_path / "test.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "test.parquet"), sample["test"][["text", "label"]])
    assert pq.ParquetFile(tmp_path / "test.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    items = {"imdb": tmp_path}
    lines = gpu_payload.size_report(items, tree=1000)
    assert lines[-1].startswith("total carried") and "limit 64 MiB" in lines[-1]
    with pytest.raises(SystemExit, match="over the limit by"):
        gpu_payload.size_report(items, tree=gpu_payload.LIMIT_BYTES)


def test_step_figures_split_setup_steps_and_epoch_ends():
    # 2 epochs of 3 steps of 1 s; 5 s of setup; each epoch end takes 4 s more than a step
    stamps = [5, 6, 7, 12, 13, 14]
    run = loop_timing.LoopRun("fp32", setup_s=5.0, loop_s=19.0 - 5.0, stamps=[(t, 8) for t in stamps], losses=[0.7])
    figures = loop_timing.step_figures(run, epochs=2)
    assert figures == pytest.approx({"setup_s": 5.0, "step_s": 1.0, "epoch_end_s": 4.0, "epoch_s": 7.0, "loop_s": 14.0})
    with pytest.raises(ValueError, match="do not split into 4 equal epochs"):
        loop_timing.step_figures(run, epochs=4)


def test_the_successful_pieces_are_the_last_forwards_that_hold_the_batch():
    assert gpu_check_loops.successful_pieces([32], 32) == [32]
    assert gpu_check_loops.successful_pieces([32, 16, 16], 32) == [16, 16]
    assert gpu_check_loops.successful_pieces([32, 16, 8, 8, 8, 8], 32) == [8, 8, 8, 8]


def test_the_clock_stamps_training_forwards_only(tiny_teacher):
    clock = loop_timing.StepClock(tiny_teacher)
    ids = torch.ones(3, 5, dtype=torch.long)
    tiny_teacher.train()(input_ids=ids)
    tiny_teacher.eval()(input_ids=ids[:2])
    clock.remove()
    tiny_teacher.train()(input_ids=ids)
    assert [rows for _, rows in clock.stamps] == [3]
    assert json.dumps(clock.stamps)  # plain numbers, as the JSON results hold them


def test_the_scale_recorder_counts_a_skipped_step_as_a_lowered_scale():
    # torch's CPU GradScaler behaves as CUDA's: a step whose gradients hold inf is skipped and the scale halved
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=1)  # grows after every good step
    with gpu_check_stages.ScaleRecorder() as scales:
        for value in (1.0, float("inf"), 1.0):
            optimizer.zero_grad()
            scaler.scale(model(torch.tensor([[value, 1.0]])).sum()).backward()
            scaler.step(optimizer)
            scaler.update()
    assert scales.updates == [(4.0, 8.0), (8.0, 4.0), (4.0, 8.0)]
    assert scales.summary() == {"steps": 3, "skipped": 1, "first_scale": 4.0, "final_scale": 8.0}
