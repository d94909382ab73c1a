"""helpers.colab: nothing outside Colab; on a faked Colab, the GPU check and the Drive offer."""
import json
import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch

from helpers import colab
from helpers.config import PROJECT_ROOT
from helpers.run import NOTEBOOK_DIR, NOTEBOOKS
from helpers.runs import open_run


def never_ask(prompt):
    raise AssertionError(f"asked although it should not: {prompt}")


def answer(text):
    asked = []

    def ask(prompt):
        asked.append(prompt)
        return text
    ask.asked = asked
    return ask


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
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return mounts


def drive_runs(tmp_path):
    return tmp_path / "drive" / "MyDrive" / "imdb-distil" / "runs"


@pytest.mark.parametrize("run_dir", ["", "runs/mine"])
def test_outside_colab_it_changes_nothing_and_prints_nothing(monkeypatch, capsys, run_dir):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not colab.on_colab()
    assert colab.setup("subset", run_dir, {}, ask=never_ask) == run_dir
    assert capsys.readouterr().out == ""


def test_on_colab_with_a_gpu_it_prints_its_name(fake_colab, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla T4")
    colab.setup("subset", "", {}, ask=answer("n"))
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
    colab.setup(profile, "", overrides, ask=answer("n"))
    out = capsys.readouterr().out
    assert ("Runtime > Change runtime type > GPU" in out) == warns
    assert ("WARNING: no GPU" in out) == warns
    if not warns:
        assert "no GPU: running on the CPU" in out


@pytest.mark.parametrize("reply", ["", "y", "Yes "])
def test_accepting_drive_mounts_it_once_and_puts_the_run_there(fake_colab, tmp_path, capsys, reply):
    ask = answer(reply)
    run_dir = colab.setup("smoke", "", {}, ask=ask)
    assert len(ask.asked) == 1 and "[Y/n]" in ask.asked[0]
    assert fake_colab == [str(tmp_path / "drive")]
    assert Path(run_dir) == drive_runs(tmp_path) / "smoke"
    run = open_run("smoke", run_dir, {})  # the returned folder is one open_run can use
    assert (drive_runs(tmp_path) / "smoke" / "params.json").exists() and run.dir == Path(run_dir)
    assert "resuming" not in capsys.readouterr().out


def test_a_named_local_run_folder_keeps_its_name_on_drive(fake_colab, tmp_path):
    assert Path(colab.setup("smoke", "runs/exp1", {}, ask=answer("y"))) == drive_runs(tmp_path) / "exp1"


def test_declining_drive_keeps_the_local_folder(fake_colab, capsys):
    assert colab.setup("smoke", "", {}, ask=answer("n")) == ""
    assert colab.setup("smoke", "runs/exp1", {}, ask=answer("no")) == "runs/exp1"
    assert fake_colab == []
    assert "keeping the run folder local" in capsys.readouterr().out


def test_a_run_already_on_a_mounted_drive_is_resumed_without_asking(fake_colab, tmp_path, capsys):
    folder = drive_runs(tmp_path) / "smoke"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"profile": "smoke"}))
    assert Path(colab.setup("smoke", "", {}, ask=never_ask)) == folder
    assert fake_colab == []
    assert "resuming there" in capsys.readouterr().out


def test_in_a_fresh_runtime_it_asks_mounts_and_then_resumes_the_run_on_drive(fake_colab, tmp_path, monkeypatch, capsys):
    folder = drive_runs(tmp_path) / "smoke"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"profile": "smoke"}))
    monkeypatch.setattr(colab, "drive_mounted", lambda: bool(fake_colab))  # Drive unseen until mounted
    assert Path(colab.setup("smoke", "", {}, ask=answer(""))) == folder
    assert len(fake_colab) == 1
    assert "resuming there" in capsys.readouterr().out


@pytest.mark.parametrize("error", [EOFError, NotImplementedError])  # plain stdin closed; ipykernel without stdin
def test_without_anyone_to_answer_it_keeps_the_local_folder(fake_colab, capsys, error):
    def ask(prompt):
        raise error()
    assert colab.setup("smoke", "runs/exp1", {}, ask=ask) == "runs/exp1"
    assert fake_colab == []
    assert "keeping the run folder local" in capsys.readouterr().out


def test_a_refused_drive_permission_keeps_the_local_folder(fake_colab, monkeypatch, capsys):
    def refuse(path):
        raise RuntimeError("credential propagation was unsuccessful")
    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount", refuse)
    assert colab.setup("smoke", "", {}, ask=answer("y")) == ""
    out = capsys.readouterr().out
    assert "credential propagation was unsuccessful" in out and "keeping the run folder local" in out


def test_a_run_dir_already_on_drive_is_mounted_and_kept_without_asking(fake_colab, tmp_path):
    run_dir = str(tmp_path / "drive" / "MyDrive" / "elsewhere" / "run1")
    assert colab.setup("smoke", run_dir, {}, ask=never_ask) == run_dir
    assert fake_colab == [str(tmp_path / "drive")]


def test_badges_and_install_cells_point_at_the_repository_main_branch():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        badge = f"https://colab.research.google.com/github/{colab.REPO}/blob/main/notebooks/{name}"
        nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        assert badge in nb.cells[0].source and badge in readme, name
        install = nb.cells[1].source
        assert f"https://github.com/{colab.REPO}.git" in install and "google.colab" in install, name
        opening = next(c.source for c in nb.cells if "open_run(" in c.source)
        assert opening.index("colab.setup(profile, run_dir, overrides)") < opening.index("open_run(profile, run_dir"), name
