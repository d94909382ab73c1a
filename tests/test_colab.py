"""helpers.pipeline.colab: nothing outside Colab; on a faked Colab, the GPU check and run folders on Drive."""
import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch

from helpers.core.files import PROJECT_ROOT
from helpers.pipeline import colab, notebook
from helpers.pipeline.runner import NOTEBOOK_DIR, NOTEBOOKS
from helpers.runs.config import resolve_params
from helpers.runs.layout import NOTEBOOKS as STAGE_NOTEBOOKS

STAGES = {notebook: stage for stage, notebook in STAGE_NOTEBOOKS.items()}


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A `google.colab` module whose drive.mount creates MyDrive under a tmp Drive root; no GPU."""
    mounts = []

    def mount(path):
        mounts.append(path)
        (Path(path) / "MyDrive").mkdir(parents=True, exist_ok=True)
    module = types.ModuleType("google.colab")
    module.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google.colab", module)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(colab, "RUNS_ROOT", tmp_path / "local-runs")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return mounts


def drive_runs(tmp_path):
    return tmp_path / "drive" / "MyDrive" / "imdb-distil" / "runs"


@pytest.mark.parametrize("drive", [None, True, False])
def test_outside_colab_run_folders_stay_in_the_project_and_nothing_is_printed(monkeypatch, capsys, drive):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not colab.on_colab()
    assert colab.runs_root(drive) == colab.RUNS_ROOT
    assert capsys.readouterr().out == ""


def test_on_colab_with_a_gpu_it_prints_its_name(fake_colab, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla T4")
    colab.check_device("subset", resolve_params("subset"))
    out = capsys.readouterr().out
    assert "GPU: Tesla T4" in out and "WARNING" not in out


@pytest.mark.parametrize("profile, overrides, warns", [
    ("subset", {}, True),                  # bert-base: hours on a CPU
    ("full", {}, True),
    ("quick", {"epochs": 3}, True),        # MiniLM, but three times the work of quick
    ("quick", {"n_train": None}, False),   # all of the committed sample is quick's 2,000 reviews
    ("quick", {}, False),
    ("smoke", {}, False),
])
def test_on_a_cpu_only_a_profile_larger_than_quick_warns(fake_colab, capsys, profile, overrides, warns):
    colab.check_device(profile, resolve_params(profile, overrides))
    out = capsys.readouterr().out
    assert ("Runtime > Change runtime type > GPU" in out) == warns
    assert ("WARNING: no GPU" in out) == warns
    if not warns:
        assert "no GPU: running on the CPU" in out


@pytest.mark.parametrize("drive", [True, None])  # None: what notebooks committed before drive defaulted to True
def test_by_default_drive_is_mounted_once_and_holds_the_run_folders(fake_colab, tmp_path, drive):
    assert colab.runs_root(drive) == drive_runs(tmp_path)
    assert colab.runs_root(drive) == drive_runs(tmp_path)
    assert fake_colab == [str(tmp_path / "drive")]  # mounted once: the second call finds it mounted


def test_drive_false_keeps_the_run_local_and_says_the_next_notebook_loses_it(fake_colab, tmp_path, capsys):
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)  # even when mounted already
    assert colab.runs_root(False) == tmp_path / "local-runs"
    assert fake_colab == []
    out = capsys.readouterr().out
    assert "drive = False" in out and "the next notebook" in out and "loses the run" in out


def test_a_refused_drive_permission_keeps_run_folders_local_and_says_what_that_costs(fake_colab, monkeypatch, tmp_path,
                                                                                      capsys):
    def refuse(path):
        raise RuntimeError("credential propagation was unsuccessful")
    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount", refuse)
    assert colab.runs_root(True) == tmp_path / "local-runs"
    out = capsys.readouterr().out
    assert "credential propagation was unsuccessful" in out and "loses the run" in out


def test_a_run_dir_on_drive_is_mounted_first(fake_colab, tmp_path):
    colab.mount_if_on_drive(tmp_path / "drive" / "MyDrive" / "elsewhere" / "run1")
    colab.mount_if_on_drive(tmp_path / "local" / "run1")
    assert fake_colab == [str(tmp_path / "drive")]


def test_badges_and_install_cells_point_at_the_repository_main_branch():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        badge = f"https://colab.research.google.com/github/{colab.REPO}/blob/main/notebooks/{name}"
        nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        assert badge in nb.cells[0].source and badge in readme, name
        install = nb.cells[1].source
        assert f"https://github.com/{colab.REPO}.git" in install and "google.colab" in install, name
        opening = next(c.source for c in nb.cells if "open_stage(" in c.source)
        assert f'open_stage("{STAGES[name]}", profile=profile, run_dir=run_dir, drive=drive, fresh=fresh' in opening
        for parameter in notebook.NAMED:  # every named parameter of the cell reaches open_stage
            assert f"{parameter}={parameter}" in opening, (name, parameter)
