"""helpers.notebook: parameters typed once, notebooks that stand alone, fresh starts (smoke, in-process)."""
import json

import pytest

from helpers import colab, notebook
from helpers.config import ConfigError
from helpers.runs import LAST_RUN, run_name


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


def test_the_same_values_name_the_same_folder_and_other_values_another():
    assert run_name("smoke", {"n_test": "32"}) == run_name("smoke", {"n_test": 32})
    assert run_name("smoke", {"n_test": 32}) != run_name("smoke", {"n_test": 16})
    assert run_name("smoke", {}) == "smoke" == run_name("smoke", {"n_test": 40})  # 40: smoke's own value


def test_without_a_run_to_continue_an_empty_profile_starts_quick(root):
    assert notebook._continued("", "", {}) == ("quick", {})
    assert notebook._continued("", str(root / "nothing-here"), {"epochs": 2}) == ("quick", {"epochs": 2})


def test_a_notebook_whose_run_folder_lacks_earlier_stages_runs_them_first_and_says_so(root, capsys):
    run = notebook.open_stage("evaluate", "smoke", "", {"n_test": 16})
    out = capsys.readouterr().out
    for stage, marker in (("data", "data/summary.json"), ("tokenize", "tokenized/length_stats.json"),
                          ("train", "train/history.json")):
        assert f"has no {marker}: running the {stage} stage here first" in out
        assert (run.dir / marker).exists()
    assert not (run.dir / "eval").exists()  # its own stage is the notebook's to run
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
