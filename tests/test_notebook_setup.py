"""helpers.pipeline.notebook: parameters typed once, notebooks that stand alone, fresh starts (smoke, in-process)."""
import json
import re
import sys
import types
from pathlib import Path

import pytest

from helpers.core import files
from helpers.core.errors import ConfigError
from helpers.pipeline import colab, notebook
from helpers.runs.run_folder import LAST_RUN, run_name


@pytest.fixture
def root(monkeypatch, tmp_path):
    """Run folders under tmp_path instead of the project's runs/ (outside Colab, runs_root is RUNS_ROOT)."""
    monkeypatch.setattr(colab, "RUNS_ROOT", tmp_path / "runs")
    return tmp_path / "runs"


def test_a_later_notebook_left_empty_continues_the_run_the_last_one_opened(root, capsys):
    first = notebook.open_stage("data", "smoke", "", {"n_test": 32})
    assert first.dir == root / run_name("smoke", {"n_test": 32}) and first.dir.name.startswith("smoke-")
    assert json.loads((root / LAST_RUN).read_text())["run_dir"] == str(first.dir)
    later = notebook.open_stage("data", "", "", {})  # profile and overrides read from the run folder
    assert later.dir == first.dir and later.profile == "smoke" and later.params.n_test == 32
    assert "profile 'smoke', overrides {'n_test': 32}" in capsys.readouterr().out


def test_a_relative_run_dir_is_read_from_the_project_root_not_the_kernels_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(files, "PROJECT_ROOT", tmp_path / "project")
    (tmp_path / "project" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project" / "notebooks")  # where Jupyter and papermill start a notebook's kernel
    run = notebook.open_stage("data", "smoke", "runs/mine", {}, drive=False)
    assert run.dir == tmp_path / "project" / "runs" / "mine" and (run.dir / "params.json").exists()


def test_the_same_values_name_the_same_folder_and_other_values_another():
    assert run_name("smoke", {"n_test": "32"}) == run_name("smoke", {"n_test": 32})
    assert run_name("smoke", {"n_test": 32}) != run_name("smoke", {"n_test": 16})
    assert run_name("smoke", {}) == "smoke" == run_name("smoke", {"n_test": 40})  # 40: smoke's own value


def test_outside_colab_without_a_run_to_continue_an_empty_profile_starts_quick_and_says_so(root, capsys):
    assert notebook._continued("", "", {}, root) == ("quick", {})
    assert "no run was found to continue" in capsys.readouterr().out
    assert notebook._continued("", str(root / "nothing-here"), {"epochs": 2}, root) == ("quick", {"epochs": 2})
    assert "holds no run: starting profile 'quick'" in capsys.readouterr().out


def test_on_colab_without_a_run_to_continue_the_notebook_stops_and_names_what_to_set(root, monkeypatch, tmp_path):
    module = types.ModuleType("google.colab")
    module.drive = types.SimpleNamespace(mount=lambda path: (Path(path) / "MyDrive").mkdir(parents=True))
    monkeypatch.setitem(sys.modules, "google.colab", module)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", tmp_path / "drive")
    with pytest.raises(ConfigError, match="no run was found to continue") as error:
        notebook.open_stage("tokenize")  # parameters left as committed, on a fresh runtime: Drive has no run
    for name in ("profile", "run_dir", "drive = True"):
        assert name in str(error.value)
    assert not (tmp_path / "drive" / colab.DRIVE_RUNS / "quick").exists()  # nothing started in its place


def test_named_parameters_override_the_profile_and_ellipsis_keeps_its_value(root):
    run = notebook.open_stage("data", "smoke", n_train=60, n_test=notebook.NOT_GIVEN, epochs=notebook.NOT_GIVEN)
    assert (run.params.n_train, run.params.n_test, run.params.epochs) == (60, 40, 2)  # smoke's own n_test, epochs
    everything = notebook.open_stage("data", "smoke", str(root / "all"), n_test=None)  # None: all test reviews
    assert everything.params.n_test is None
    with pytest.raises(ConfigError, match="unknown named parameter"):
        notebook.open_stage("data", "smoke", student_lr=1e-3)


@pytest.mark.parametrize("overrides, expected", [
    ({"n_train": 60}, {"n_train": 60}),
    ('{"n_train": 60, "epochs": 3}', {"n_train": 60, "epochs": 3}),  # papermill -p overrides '<json>'
    ("", {}), (None, {}),
])
def test_overrides_take_a_mapping_or_a_json_object(overrides, expected):
    assert notebook.parse_overrides(overrides) == expected


@pytest.mark.parametrize("overrides, message", [
    ("{n_train: 60}", "overrides '{n_train: 60}' is not valid JSON"),
    ('["n_train", 60]', "overrides must be a mapping"),
])
def test_malformed_overrides_are_refused_by_name_with_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        notebook.parse_overrides(overrides)
    assert "e.g." in str(error.value)


def test_a_notebook_whose_run_folder_lacks_earlier_stages_runs_them_first_and_says_so(root, capsys):
    run = notebook.open_stage("evaluate", "smoke", "", {"n_test": 16})
    out = capsys.readouterr().out
    for stage, marker in (("data", "data/summary.json"), ("tokenize", "tokenize/length_stats.json"),
                          ("train", "train/history.json")):
        assert f"has no {marker}: running the {stage} stage here first" in out
        assert (run.dir / marker).exists()
    assert not (run.dir / "evaluate").exists()  # its own stage is the notebook's to run
    notebook.open_stage("evaluate", "", "", {})
    assert "running the" not in capsys.readouterr().out  # nothing missing any more


def test_other_parameters_for_an_existing_folder_are_refused_with_the_notebook_fix(root):
    run = notebook.open_stage("data", "smoke", str(root / "mine"), {})
    with pytest.raises(ConfigError, match="set fresh = True in its parameters cell"):
        notebook.open_stage("data", "smoke", str(run.dir), {"n_test": 16})


def test_fresh_empties_the_run_folder_and_starts_it_with_the_new_parameters(root):
    run = notebook.open_stage("data", "smoke", str(root / "mine"), {})
    (run.dir / "data").mkdir()
    (run.dir / "data" / "summary.json").write_text("[]")
    again = notebook.open_stage("data", "smoke", str(run.dir), {"n_test": 16}, fresh=True)
    assert again.params.n_test == 16 and not (run.dir / "data").exists()
