"""The five real notebooks, executed by real Jupyter kernels through papermill on `smoke`."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from cli import run_cli
from headless import body_attributes, render

from helpers.pipeline.checks import open_run
from helpers.pipeline.runner import NOTEBOOK_DIR, NOTEBOOKS
from helpers.pipeline.stages import STAGE_FUNCTIONS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_clean_and_parameterised(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name_ in ("profile", "run_dir", "overrides", "fresh", "drive"):
        assert f"{name_} = " in tagged[0].source
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["language_info"]["name"] == "python"
    assert "colab.research.google.com/github/" in nb.cells[0].source


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = subprocess.run([sys.executable, "-m", "helpers.run", "smoke", "--run-dir", str(run_dir), "-p", "n_test", "32"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir.parent / "stdout.txt").write_text(result.stdout)
    (run_dir.parent / "stderr.txt").write_text(result.stderr)
    return run_dir


def test_the_runner_streams_each_stages_progress_to_the_terminal(smoke_run):
    out = (smoke_run.parent / "stdout.txt").read_text()
    assert "epoch 1:" in out and "reviews/s" in out and "loss=" in out  # the loop's text bar, live
    assert "epoch 2: val accuracy" in out and "teacher logits" in out


def test_the_log_holds_nothing_a_user_cannot_act_on(smoke_run):
    """No kernel start-up warning about TCP (one per notebook before), no training step's source code (03 shows it
    to a person stepping through the notebook, not to a batch run's log)."""
    out, err = (smoke_run.parent / "stdout.txt").read_text(), (smoke_run.parent / "stderr.txt").read_text()
    assert "without encryption" not in err and "IPKernelApp" not in err, err[-2000:]
    assert "def step(self" not in out
    assert "def step(self" not in _notebook_text(smoke_run / "notebooks" / "03_train.ipynb")


def test_plain_papermill_without_the_runner_is_a_batch_run_too(smoke_run, tmp_path):
    """No helpers.run, no environment variable, only run_dir given: the kernel cannot read stdin, and
    that is what makes bars text and the demo print its static example."""
    out = tmp_path / "04.ipynb"
    env = {**os.environ, "JUPYTER_PATH": f"{sys.prefix}/share/jupyter"}
    result = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK_DIR / "04_evaluate.ipynb"), str(out),
                             "-p", "run_dir", str(smoke_run), "-k", "python3", "--cwd", str(NOTEBOOK_DIR)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    text = _notebook_text(out)
    assert "A static example" in text and "profile 'smoke', overrides {'n_test': 32}" in text
    widgets = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets


def test_batch_run_writes_every_artifact(smoke_run):
    for path in ("params.json", "environment.json", "timings.json", "data/train.parquet", "data/val.parquet",
                 "data/test.parquet", "data/label_balance.png", "tokenize/tokenizer/tokenizer.json",
                 "tokenize/token_lengths.png", "train/model/model.safetensors", "train/model/config.json",
                 "train/loss_curve.png", "train/history.json", "evaluate/confusion_matrix.png", "evaluate/predictions.parquet",
                 "evaluate/reliability.png", "evaluate/test_sets.json", "evaluate/calibration.json", "evaluate/baseline.json",
                 "evaluate/probabilities.parquet", "distill/model/model.safetensors", "distill/calibration.json",
                 "distill/student_loss_curve.png"):
        assert (smoke_run / path).exists(), path
    if importlib.util.find_spec("onnxruntime"):  # the student exported once: for the comparison, reused by 05's export
        copies = json.loads((smoke_run / "distill" / "onnx" / "copies.json").read_text())["files"]
        for name in copies.values():
            assert (smoke_run / "export" / name).read_bytes() == (smoke_run / "distill" / "onnx" / name).read_bytes()
    params = json.loads((smoke_run / "params.json").read_text())
    assert params["profile"] == "smoke" and params["params"]["n_test"] == 32
    assert sorted(json.loads((smoke_run / "timings.json").read_text())) == sorted(NOTEBOOKS)


def run_folder_files(run_dir):
    """Every file of a run folder, relative, with the tensorboard writers' time stamps and host names masked."""
    names = (str(path.relative_to(run_dir)) for path in Path(run_dir).rglob("*") if path.is_file())
    return sorted(re.sub(r"tfevents\..*", "tfevents.<host>", re.sub(r"/[0-9]+\.[0-9]+/", "/<time>/", name)) for name in names)


def test_a_smoke_run_folder_holds_the_same_files_under_the_same_names_as_before_the_package_moved(smoke_run):
    """tests/smoke_run_files.txt lists a smoke run folder made at 62f5603, before helpers/ became sub-packages
    (with the export extra installed: without it, no ONNX files); files later issues add are named here."""
    added_since = ["evaluate/paired.json"]  # issue 31: the paired differences of the models scored on the same reviews
    expected = sorted((Path(__file__).parent / "smoke_run_files.txt").read_text().split() + added_since)
    if not importlib.util.find_spec("onnxruntime"):
        expected = [name for name in expected if not name.startswith(("export/", "distill/onnx/", "distill/my_reviews"))]
    assert run_folder_files(smoke_run) == expected


def test_metrics_and_comparison_have_the_promised_keys(smoke_run):
    metrics = json.loads((smoke_run / "evaluate" / "metrics.json").read_text())
    assert set(metrics) == {"accuracy", "accuracy_ci95", "f1", "precision", "recall", "n", "ece", "ece_uncalibrated",
                            "temperature"}
    low, high = metrics["accuracy_ci95"]
    assert low <= metrics["accuracy"] <= high and metrics["temperature"] > 0
    assert metrics["n"] == 32 and 0.0 <= metrics["accuracy"] <= 1.0
    comparison = json.loads((smoke_run / "distill" / "comparison.json").read_text())
    assert comparison["reviews"] == {"test": 32, "cpu_sample": 32, "timed": 32}  # smoke: n_speed 40, n_cpu_test 2000
    models = comparison["models"]
    onnx = ["student_onnx", "student_onnx_int8"] if importlib.util.find_spec("onnxruntime") else []
    assert list(models) == ["baseline", "teacher", "student", "student_int8", *onnx]
    for row in models.values():
        assert set(row) == {"params", "size_mb", "reviews_per_s", "test", "cpu_sample", "timed"}
        assert row["reviews_per_s"] > 0 and row["size_mb"] > 0
        assert row["test"] == row["cpu_sample"]  # the sample is the whole test split here
    assert models["student"]["params"] < models["teacher"]["params"]
    assert models["student_int8"]["params"] == models["student"]["params"]
    assert models["student_int8"]["size_mb"] < models["student"]["size_mb"]
    assert models["teacher"]["test"]["accuracy"] == metrics["accuracy"]
    assert set(comparison["paired"]) == {"teacher - baseline", "student - teacher",
                                         *(f"{name} - student" for name in ["student_int8", *onnx])}
    short = comparison["extra_test_sets"]["short"]  # smoke scores the shipped short sentences too
    assert short["reviews"] == {"test": 1000, "cpu_sample": 1000, "timed": 40} and set(short["models"]) == set(models)
    sets = json.loads((smoke_run / "evaluate" / "test_sets.json").read_text())
    assert sets["short"]["teacher"] == {**short["models"]["teacher"]["test"],
                                        **{k: sets["short"]["teacher"][k] for k in ("precision", "recall", "n")}}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_executed_notebooks_show_their_results_without_errors(smoke_run, name):
    nb = nbformat.read(smoke_run / "notebooks" / name, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "each stage shows at least one figure"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and str(smoke_run) in injected[0].source


REPORT_HEADINGS = ("Summary", "Parameters", "Environment", "Data", "Token lengths", "Training", "Test metrics",
                   "Distillation")


def test_the_report_loads_in_chromium_with_every_figure_and_no_console_errors(smoke_run):
    """report.html of the real run, opened in headless Chromium (the negative checks are in test_report.py)."""
    report = smoke_run / "report.html"
    assert report.exists(), "the batch run writes report.html"
    pngs = [p for p in smoke_run.rglob("*.png") if "notebooks" not in p.parts]
    dom, console = render(report)
    # a PNG the report does not show makes the counts differ: add new figures to helpers/report.py
    assert body_attributes(dom) == {"data-figures": str(len(pngs)), "data-figures-loaded": str(len(pngs))}, pngs
    for heading in REPORT_HEADINGS:
        assert f"<h2>{heading}</h2>" in dom
    assert "Not run yet" not in dom and 'class="missing"' not in dom
    assert "student_int8 / teacher" in dom
    assert console == [], console


def test_rerunning_into_the_same_folder_with_other_parameters_is_refused(smoke_run):
    result = run_cli("smoke", "--run-dir", str(smoke_run), "-p", "n_test", "16")
    assert result.returncode != 0 and "n_test: 32 -> 16" in result.stderr
    assert json.loads((smoke_run / "params.json").read_text())["params"]["n_test"] == 32


def test_the_evaluate_demo_prints_its_static_example_in_a_batch_run(smoke_run):
    text = _notebook_text(smoke_run / "notebooks" / "04_evaluate.ipynb")
    assert "A static example" in text and "A typed review:" in text and "P(positive): [" in text


def _notebook_text(path):
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_smoke_pipeline_runs_end_to_end_in_bf16_forced_on_the_cpu(tmp_path):
    """The bf16 path on every machine: real bf16 on a CPU with bf16 instructions, emulated (slow, but the
    tiny model keeps it short) on one without. The smoke profile itself pins fp32 (the run above). The stages
    run as the notebooks call them, in this process: the notebooks themselves do not depend on the precision."""
    run = open_run("smoke", tmp_path / "bf16", {"precision": "bf16", "n_test": 32})
    for stage in STAGE_FUNCTIONS.values():
        stage(run)
    for stage in ("train", "distill"):
        history = json.loads((run.dir / stage / "history.json").read_text())
        assert (history["precision"], history["precision_reason"]) == ("bf16", "asked for explicitly")
    int8 = json.loads((run.dir / "distill" / "comparison.json").read_text())["models"]["student_int8"]
    assert 0.0 <= int8["cpu_sample"]["accuracy"] <= 1.0 and int8["reviews_per_s"] > 0


def test_the_same_command_again_continues_the_run_and_a_finished_run_is_left_as_it_is(smoke_run):
    """Last in this file: it reruns the batch run in place (as after a disconnect). Finished stages keep no
    checkpoints (a resume mid-stage is tests/test_resume.py's), so the runner skips them and says so."""
    before = {path: path.read_bytes() for path in smoke_run.rglob("*") if path.is_file() and "notebooks" not in path.parts
              and path.name not in ("report.html", "LAST_RUN")}
    assert not any((smoke_run / stage / "checkpoints").exists() for stage in ("train", "distill"))
    result = run_cli("smoke", "--run-dir", str(smoke_run), "-p", "n_test", "32")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in ("data", "tokenize", "train", "evaluate", "distill"):
        assert f"{stage}: done already" in result.stdout and f"--stages {stage} runs it again" in result.stdout
    assert ".ipynb ..." not in result.stdout  # no notebook executed
    assert {path: path.read_bytes() for path in before} == before
