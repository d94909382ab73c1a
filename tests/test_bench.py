"""The benchmarks run end to end at their tiny size and write the promised keys (timings are never asserted)."""
import importlib.util
import json

import numpy as np
import pytest

from helpers.core.files import PROJECT_ROOT
from helpers.pipeline import stages
from helpers.pipeline.checks import open_run

pytestmark = pytest.mark.slow


def _bench(name):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_speed_compares_three_loops(tmp_path):
    out = tmp_path / "train_speed.json"
    _bench("train_speed").main(["--size", "tiny", "--seeds", "2", "--precision", "fp32", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results["seeds"] == 2
    for key in ("ours_vs_naive", "ours_vs_trainer", "mfu", "padding_share"):
        assert key in results
    assert set(results["variants"]) == {"ours", "naive", "trainer"}
    assert {figures["precision"] for figures in results["variants"].values()} == {"fp32"}  # as pinned
    for figures in results["variants"].values():
        assert figures["reviews_per_s"] > 0 and 0 < figures["mfu"] < 1 and 0 <= figures["padding_share"] < 1
        assert 0 <= figures["val_accuracy"] <= 1 and figures["peak_memory_mb"] > 0
        runs = figures["val_accuracy_runs"]
        assert len(runs) == 2 and figures["val_accuracy"] == pytest.approx(sum(runs) / 2)
        assert figures["val_accuracy_min"] == min(runs) and figures["val_accuracy_max"] == max(runs)
    assert results["ours_vs_naive"] == pytest.approx(
        results["variants"]["ours"]["reviews_per_s"] / results["variants"]["naive"]["reviews_per_s"])


def test_train_speed_trains_only_the_named_loops_at_the_given_lr(tmp_path):
    bench = _bench("train_speed")
    out = tmp_path / "train_speed.json"
    results = bench.main(["--size", "tiny", "--variants", "naive", "--lr", "2e-3", "--precision", "fp32", "--out", str(out)])
    assert set(results["variants"]) == {"ours", "naive"}  # ours always: every ratio is to it
    assert results["lr"] == 2e-3 and results["ours_vs_trainer"] is None
    assert json.loads(out.read_text())["ours_vs_naive"] == pytest.approx(results["ours_vs_naive"])
    with pytest.raises(SystemExit, match="unknown fastest; choose from ours, naive, trainer"):
        bench.main(["--size", "tiny", "--variants", "ours,fastest", "--out", str(out)])


def test_infer_speed_compares_teacher_student_and_int8(tmp_path):
    run = open_run("smoke", tmp_path / "run")
    for stage in (stages.data_stage, stages.tokenize_stage, stages.train_stage, stages.evaluate_stage, stages.distill_stage):
        stage(run)
    out = tmp_path / "infer_speed.json"
    _bench("infer_speed").main([str(run.dir), "--size", "tiny", "--out", str(out)])
    results = json.loads(out.read_text())
    for key in ("student_vs_teacher", "int8_vs_teacher", "teacher_accuracy", "student_accuracy", "int8_accuracy"):
        assert key in results
    assert results["reviews"] == 40 and set(results["models"]) == {"teacher", "student", "student_int8"}
    comparison = json.loads((run.dir / "distill" / "comparison.json").read_text())
    scores = comparison["models"]  # smoke's 40 test reviews are all in the CPU sample
    assert results["teacher_accuracy"] == scores["teacher"]["test"]["accuracy"]  # the same reviews, the same predictions
    assert results["int8_accuracy"] == scores["student_int8"]["cpu_sample"]["accuracy"]


def test_recipe_ranks_variants_on_held_out_training_reviews_and_scores_test_only_when_asked(tmp_path, capsys):
    import pandas as pd

    from helpers.data import extra_sets
    from helpers.data.imdb import SAMPLE_DIR, clean_review

    imdb = tmp_path / "imdb"  # a stand-in IMDB folder: 1,000 short sentences plus 50 of the sample's own reviews
    imdb.mkdir()
    sample_train = pd.read_parquet(SAMPLE_DIR / "train.parquet").head(50)
    pd.concat([extra_sets.load_extra_tests("short")["short"][["text", "label"]], sample_train[["text", "label"]]]
              ).to_parquet(imdb / "train.parquet")
    recipe, out = _bench("recipe"), tmp_path / "recipe.jsonl"
    common = ["--imdb", str(imdb), "--n-select", "200", "--seeds", "2", "--out", str(out),
              "--params", '{"model": "tiny-random-bert", "n_train": 40, "precision": "fp32", "min_steps": 0}']
    rows = recipe.main(["--variants", "quick,constant-lr", *common])
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows  # each appended as it finished
    assert {(row["variant"], row["seed"]) for row in rows} == {(v, s) for v in ("quick", "constant-lr") for s in (42, 43)}
    selection = recipe.selection_set(imdb, 200)
    assert not set(selection["text"].map(clean_review)) & set(sample_train["text"].map(clean_review))
    for row in rows:
        assert "test" not in row and "short" not in row  # chosen on held-out training reviews, test never seen
        assert row["steps"] == 5 and row["n_val"] == 4 and 0 <= row["val_best"] <= 1  # 36 reviews, batch 8
        right = (np.asarray(row["selection_probs"]) >= 0.5) == selection["label"].to_numpy()
        assert row["selection"] == pytest.approx(right.mean())
    table = capsys.readouterr().out.splitlines()[-3:]
    assert table[0].startswith("variant") and "against quick" in table[0]
    medians = [float(line.split()[2]) for line in table[1:]]
    assert medians == sorted(medians, reverse=True)  # best first
    assert "(reference)" in next(line for line in table[1:] if line.startswith("quick "))
    assert "per seed" in next(line for line in table[1:] if line.startswith("constant-lr"))
    assert recipe.main(["--table-only", *common]) == rows and capsys.readouterr().out.splitlines()[-3:] == table
    chosen = recipe.main(["--variants", "quick", "--test", *common[:4], "--seeds", "1", "--out", str(tmp_path / "t.jsonl"),
                          *common[-2:]])
    assert 0 <= chosen[0]["test"] <= 1 and 0 <= chosen[0]["short"] <= 1
    assert chosen[0]["selection"] == rows[0]["selection"]  # the same seed trains the same model


def test_train_speed_overhead_times_ours_and_the_trainer_with_epoch_work_off_and_on(tmp_path):
    out = tmp_path / "overhead.json"
    results = _bench("train_speed").main(["--overhead", "--n-train", "32", "--repeats", "2", "--out", str(out)])
    assert json.loads(out.read_text())["medians"] == results["medians"]
    assert results["precision"] == "fp32" and results["steps_per_epoch"] == 4 and results["size"]["epochs"] == 3
    assert set(results["medians"]) == {"off", "on"}
    for work, by_loop in results["medians"].items():
        assert set(by_loop) == {"ours", "trainer grouped", "trainer"}
        for name, figures in by_loop.items():
            runs = results["runs"][work][name]
            assert len(runs) == 2 and figures["step_s"] == pytest.approx(sum(r["step_s"] for r in runs) / 2)
            assert figures["setup_s"] > 0 and figures["step_s"] > 0 and figures["epoch_s"] > figures["step_s"]
        for rival in ("trainer grouped", "trainer"):
            ratio = results["ratios"][work][rival]
            assert ratio["step_s"] == pytest.approx(by_loop["ours"]["step_s"] / by_loop[rival]["step_s"])
            assert ratio["epoch_end_difference_s"] == pytest.approx(
                by_loop["ours"]["epoch_end_s"] - by_loop[rival]["epoch_end_s"])
        assert results["target_met"][work] == (by_loop["ours"]["step_s"] <= by_loop["trainer grouped"]["step_s"]
                                               and by_loop["ours"]["epoch_end_s"] <= by_loop["trainer grouped"]["epoch_end_s"])
    # with its epoch-end work on, each loop validates and saves: its epoch ends take longer than with it off
    for name in ("ours", "trainer grouped"):
        assert results["medians"]["on"][name]["epoch_end_s"] > results["medians"]["off"][name]["epoch_end_s"]
