"""--sweep: one run per value, checked before any is written, and the table and figure they make."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from cli import run_cli, stage_functions

from helpers.core.errors import ConfigError
from helpers.pipeline import runner, sweep


def test_a_sweep_names_one_known_parameter_and_two_or_more_values():
    assert sweep.parse_sweep("n_train=250, 500,1000") == ("n_train", ["250", "500", "1000"])
    with pytest.raises(ConfigError, match="'n_trian' is not a parameter"):
        sweep.parse_sweep("n_trian=250,500")
    for bad in ("n_train=250", "n_train=250,250", "n_train"):
        with pytest.raises(ConfigError, match="two or more different values"):
            sweep.parse_sweep(bad)


def _fake_run(folder, teacher=None, student=None, timings=None):
    folder.mkdir(parents=True)
    for stage, accuracy in (("evaluate", teacher), ("distill", student)):
        if accuracy is not None:
            (folder / stage).mkdir()
            (folder / stage / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    if timings:
        (folder / "timings.json").write_text(json.dumps(timings))


def test_results_table_and_learning_curve(tmp_path):
    dirs = sweep.run_dirs(tmp_path, "n_train", ["250", "500"])
    _fake_run(dirs["250"], teacher=0.8, student=0.78, timings={"03_train.ipynb": 60.0, "05_distill.ipynb": 50.0})
    _fake_run(dirs["500"], teacher=0.85, timings={"03_train.ipynb": 120.0})  # distill not run
    table = sweep.collect("n_train", dirs)
    assert table.loc["250"].tolist() == [0.8, 0.78, 60.0, 50.0]
    assert table.loc["500", "teacher_accuracy"] == 0.85 and pd.isna(table.loc["500", "student_accuracy"])
    sweep.write_results(tmp_path, "n_train", table)
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert pd.read_csv(tmp_path / "sweep.csv")["teacher_accuracy"].tolist() == [0.8, 0.85]


def _run(*args):
    """The runner as a real process, each stage a notebook in its own kernel."""
    return subprocess.run([sys.executable, "-m", "helpers.run", "smoke", *args], capture_output=True, text=True,
                          timeout=600)


def _plan(monkeypatch, *args):
    """The runner in this process, each stage's function run here instead of its notebook: for what the sweep
    plans and collects (the notebooks under a sweep: test_the_cli_makes_one_run_folder_per_value_and_the_table)."""
    monkeypatch.setattr(runner, "execute_notebooks", stage_functions)
    return run_cli("smoke", *args)


def test_a_bad_value_stops_the_sweep_before_any_folder_is_written(tmp_path):
    result = run_cli("smoke", "--sweep", "n_train=40,99999", "--run-dir", str(tmp_path / "sweep"))
    assert result.returncode != 0 and "n_train" in result.stderr and "99999" in result.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_the_cli_makes_one_run_folder_per_value_and_the_table(tmp_path):
    result = _run("--sweep", "n_train=40,80", "--run-dir", str(tmp_path), "--stages", "data")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for value in (40, 80):
        params = json.loads((tmp_path / f"n_train-{value}" / "params.json").read_text())["params"]
        assert params["n_train"] == value
        assert (tmp_path / f"n_train-{value}" / "data" / "train.parquet").exists()
    assert pd.read_csv(tmp_path / "sweep.csv")["n_train"].tolist() == [40, 80]
    assert (tmp_path / "learning_curve.png").exists() and "learning curve:" in result.stdout


def test_over_seeds_the_mean_and_spread_of_each_figure(tmp_path):
    dirs = sweep.run_dirs(tmp_path, "seed", ["42", "43", "44"])
    for (value, folder), accuracy in zip(dirs.items(), (0.80, 0.86, 0.83)):
        _fake_run(folder, teacher=accuracy, timings={"03_train.ipynb": 60.0})
    table = sweep.collect("seed", dirs)
    summary = sweep.seed_summary(table)
    assert summary.loc["teacher_accuracy", "mean"] == pytest.approx(0.83)
    assert summary.loc["teacher_accuracy", "std"] == pytest.approx(0.03)  # sample standard deviation
    assert (summary.loc["teacher_accuracy", "min"], summary.loc["teacher_accuracy", "max"]) == (0.80, 0.86)
    sweep.write_results(tmp_path, "seed", table)
    assert pd.read_csv(tmp_path / "seeds.csv", index_col=0).loc["teacher_accuracy", "mean"] == pytest.approx(0.83)


def test_seeds_n_is_a_sweep_over_the_profiles_seed_and_the_next_ones(tmp_path, monkeypatch):
    result = _plan(monkeypatch, "--seeds", "2", "--run-dir", str(tmp_path), "--stages", "data")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["seed-42", "seed-43"]
    assert "over 2 seeds:" in result.stdout and (tmp_path / "seeds.csv").exists()


def test_a_sweep_under_seeds_gives_each_value_its_median(tmp_path):
    values, dirs = ["250", "500"], []
    for value, accuracies in zip(values, ((0.50, 0.84, 0.86), (0.85, 0.80, 0.87))):
        for seed, accuracy in zip((42, 43, 44), accuracies):
            folder = tmp_path / f"n_train-{value}" / f"seed-{seed}"
            _fake_run(folder, teacher=accuracy, timings={"03_train.ipynb": 60.0 + seed})
            dirs.append(folder)
    runs = sweep.collect_grid("n_train", values, dirs)
    assert runs["seed"].tolist() == [42, 43, 44, 42, 43, 44]
    table = sweep.write_grid_results(tmp_path, "n_train", runs)
    assert table["teacher_accuracy"].tolist() == [0.84, 0.85]  # medians: one bad seed does not drag a size down
    assert table.loc["250", ["seeds", "teacher_min", "teacher_max"]].tolist() == [3, 0.50, 0.86]
    assert table.loc["500", "train_seconds"] == 103.0
    assert pd.read_csv(tmp_path / "runs.csv").shape[0] == 6 and (tmp_path / "learning_curve.png").exists()


def test_a_sweep_with_seeds_runs_every_value_under_every_seed(tmp_path, monkeypatch):
    result = _plan(monkeypatch, "--sweep", "n_train=40,80", "--seeds", "2", "--run-dir", str(tmp_path), "--stages", "data")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for value in (40, 80):
        for seed in (42, 43):
            params = json.loads((tmp_path / f"n_train-{value}" / f"seed-{seed}" / "params.json").read_text())["params"]
            assert (params["n_train"], params["seed"]) == (value, seed)
    assert pd.read_csv(tmp_path / "sweep.csv")["seeds"].tolist() == [2, 2]
    assert "median over 2 seeds:" in result.stdout
