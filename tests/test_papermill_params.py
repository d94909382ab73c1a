"""Plain papermill as its users call it, and paths that mean what the user typed (01_data on smoke)."""
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers.data.imdb import SAMPLE_DIR
from helpers.pipeline.runner import NOTEBOOK_DIR

pytestmark = pytest.mark.slow
ENV = {**os.environ, "JUPYTER_PATH": f"{sys.prefix}/share/jupyter"}


def papermill(run_dir, *args):
    """01_data through plain papermill into `run_dir`; (exit code, the executed notebook's outputs as text)."""
    out = run_dir.parent / f"{run_dir.name}.ipynb"
    result = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK_DIR / "01_data.ipynb"), str(out),
                             "-k", "python3", "--cwd", str(NOTEBOOK_DIR), "-p", "run_dir", str(run_dir), *args],
                            capture_output=True, text=True, timeout=600, env=ENV)
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs] \
        if out.exists() else []
    return result.returncode, "\n".join(o.get("text", "") + o.get("evalue", "") for o in outputs) + result.stderr[-2000:]


def drawn_training_reviews(run_dir):
    params = json.loads((run_dir / "params.json").read_text())["params"]
    summary = {row["split"]: row for row in json.loads((run_dir / "data" / "summary.json").read_text())}
    return params["n_train"], summary["train"]["reviews"] + summary["val"]["reviews"]


@pytest.mark.parametrize("args", [
    ("-p", "n_train", "60"),                             # a named variable of the parameters cell
    ("-p", "overrides", '{"n_train": 60}'),              # a JSON string
    ("-y", "overrides: {n_train: 60}"),                  # YAML: a mapping
], ids=["named", "json", "yaml"])
def test_plain_papermill_runs_what_was_asked(tmp_path, args):
    run_dir = tmp_path / "run"
    code, text = papermill(run_dir, "-p", "profile", "smoke", *args)
    assert code == 0, text[-3000:]
    assert drawn_training_reviews(run_dir) == (60, 60)  # smoke's own is 80


def test_a_malformed_json_overrides_is_refused_by_name_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    code, text = papermill(run_dir, "-p", "profile", "smoke", "-p", "overrides", "{n_train: 60}")
    assert code != 0
    assert "overrides '{n_train: 60}' is not valid JSON" in text and "-p overrides" in text
    assert not run_dir.exists()


def test_a_relative_data_folder_means_the_one_in_the_folder_the_runner_started_in(tmp_path):
    (tmp_path / "mydata").mkdir()
    for split in ("train", "test"):
        shutil.copy(SAMPLE_DIR / f"{split}.parquet", tmp_path / "mydata" / f"{split}.parquet")
    result = subprocess.run([sys.executable, "-m", "helpers.run", "smoke", "--run-dir", "run", "-p", "data", "./mydata",
                             "--stages", "data"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    params = json.loads((tmp_path / "run" / "params.json").read_text())["params"]
    assert params["data"] == str(tmp_path / "mydata")  # absolute: the notebooks run in notebooks/
    assert (tmp_path / "run" / "data" / "summary.json").exists()
