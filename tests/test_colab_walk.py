"""The Colab steps of docs/colab.md, walked the way Colab runs them (smoke, real kernels through papermill).

Each notebook runs in a runtime of its own: a fresh process, a fresh working folder, Drive not yet
mounted. A stand-in `google.colab` module, imported at kernel start by a sitecustomize.py on the
kernel's path as Colab imports its own, makes the notebooks take their Colab branches; its
`drive.mount(path)` links `path/MyDrive` to one folder that outlives every runtime, as Google Drive
does. The install cell finds the project at IMDB_DISTIL_HOME (this checkout, already installed), so
nothing is fetched; Drive is mounted at IMDB_DISTIL_DRIVE instead of /content/drive.
"""
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers.core.files import PROJECT_ROOT
from helpers.pipeline.colab import DRIVE_RUNS
from helpers.pipeline.runner import NOTEBOOK_DIR
from helpers.runs import layout

pytestmark = pytest.mark.slow

FAKE_COLAB = '''"""Stand-in for Colab's google.colab (tests/test_colab_walk.py)."""
import os
from pathlib import Path


class drive:
    @staticmethod
    def mount(path):
        """Link path/MyDrive to the folder that plays Google Drive: it outlives every runtime."""
        Path(path).mkdir(parents=True, exist_ok=True)
        os.symlink(os.environ["FAKE_DRIVE_STORE"], Path(path) / "MyDrive")
'''


@pytest.fixture
def colab(tmp_path):
    """run(notebook, *papermill_args): the notebook in a fresh runtime; returns (exit code, its executed text)."""
    site = tmp_path / "site"
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text(FAKE_COLAB)
    (site / "sitecustomize.py").write_text("import google.colab  # Colab's kernels start with it imported\n")
    store = tmp_path / "google-drive"
    store.mkdir()
    mount_point = tmp_path / "content" / "drive"
    runtimes = []

    def run(notebook, *args):
        shutil.rmtree(tmp_path / "content", ignore_errors=True)  # a fresh runtime: /content anew, Drive unmounted
        workdir = tmp_path / f"runtime-{len(runtimes)}"
        workdir.mkdir()
        runtimes.append(workdir)
        env = {**os.environ, "PYTHONPATH": str(site), "FAKE_DRIVE_STORE": str(store),
               "IMDB_DISTIL_DRIVE": str(mount_point), "IMDB_DISTIL_HOME": str(PROJECT_ROOT),
               "JUPYTER_PATH": f"{sys.prefix}/share/jupyter"}
        out = workdir / notebook
        result = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK_DIR / notebook), str(out),
                                 "-k", "python3", *args], cwd=workdir, env=env, capture_output=True, text=True,
                                timeout=600)
        return result.returncode, _text(out) + result.stderr[-2000:]

    run.store = store
    return run


def _text(path):
    if not path.exists():
        return ""
    cells = nbformat.read(path, as_version=4).cells
    return "\n".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", "")) + output.get("evalue", "")
                     for cell in cells if cell.cell_type == "code" for output in cell.outputs)


def test_a_student_steps_through_01_to_05_each_in_its_own_runtime_and_the_run_lives_on_drive(colab):
    code, text = colab("01_data.ipynb", "-p", "profile", "smoke")
    assert code == 0, text[-3000:]
    run_dir = colab.store / DRIVE_RUNS.removeprefix("MyDrive/") / "smoke"
    assert (run_dir / layout.DONE_MARKERS["data"]).exists(), text[-3000:]
    for stage in ("tokenize", "train", "evaluate", "distill"):  # parameters left as committed
        code, text = colab(layout.NOTEBOOKS[stage])
        assert code == 0, text[-3000:]
        assert "continuing the run the last notebook opened" in text and "profile 'smoke'" in text, stage
        assert "running the" not in text, f"{stage} ran an earlier stage again:\n{text[-3000:]}"
        assert (run_dir / layout.DONE_MARKERS[stage]).exists(), stage
    assert json.loads((run_dir / "params.json").read_text())["profile"] == "smoke"


def test_a_later_notebook_with_no_run_on_drive_stops_and_says_what_to_set(colab):
    code, text = colab("03_train.ipynb")  # nothing on Drive: 01 never ran, or ran with drive = False
    assert code != 0
    assert "no run was found to continue" in text
    for name in ("profile", "run_dir", "drive = True"):
        assert name in text
    assert not any(colab.store.rglob("params.json"))  # it started nothing in the run's place
