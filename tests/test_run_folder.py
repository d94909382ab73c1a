import json

import pytest
from cli import run_cli

from helpers.core.errors import ConfigError
from helpers.pipeline.checks import open_run
from helpers.runs.run_folder import load_run


def test_a_new_run_folder_records_parameters_and_environment(tmp_path):
    run = open_run("smoke", tmp_path / "r", {"n_train": 100})
    stored = json.loads((tmp_path / "r" / "params.json").read_text())
    assert stored["profile"] == "smoke" and stored["params"]["n_train"] == 100
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    for package in ("torch", "transformers", "datasets", "accelerate"):
        assert env["packages"][package], package
    assert env["python"].count(".") == 2 and env["device"]
    assert env["git_commit"] is None or len(env["git_commit"].split("-")[0]) == 40
    assert load_run(tmp_path / "r") == run


def test_reopening_with_the_same_parameters_is_fine(tmp_path):
    first = open_run("smoke", tmp_path, {"n_train": 100})
    assert open_run("smoke", tmp_path, {"n_train": "100"}) == first


def test_a_run_folder_refuses_other_parameters(tmp_path):
    open_run("smoke", tmp_path, {"n_train": 100})
    with pytest.raises(ConfigError, match=r"n_train: 100 -> 200.*--overwrite"):
        open_run("smoke", tmp_path, {"n_train": 200})


def test_a_missing_stage_output_names_the_stage_to_run_first(tmp_path):
    run = open_run("smoke", tmp_path)
    with pytest.raises(FileNotFoundError, match="train/ first"):
        run.require("train", "model")


def _cli(*args):
    return run_cli(*args)


def test_cli_refuses_a_bad_parameter_before_touching_anything(tmp_path):
    result = _cli("smoke", "--run-dir", str(tmp_path / "r"), "-p", "batch_size", "-3")
    assert result.returncode != 0
    assert "parameter 'batch_size': -3 is below the minimum 1" in result.stderr
    assert not (tmp_path / "r").exists()


def test_cli_refuses_an_unknown_profile(tmp_path):
    result = _cli("huge", "--run-dir", str(tmp_path / "r"))
    assert result.returncode != 0 and "unknown profile 'huge'" in result.stderr


def test_cli_overwrite_will_not_delete_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = _cli("smoke", "--run-dir", str(tmp_path), "--overwrite")
    assert result.returncode != 0 and "not a run folder" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cli_help_lists_the_parameters():
    result = _cli("--help")
    assert result.returncode == 0 and "max_length" in result.stdout and "student_model" in result.stdout


CADENCE = {"checkpoint_minutes": 5, "checkpoint_every": 7, "keep_checkpoints": 1, "keep_checkpoints_at_end": True}


def test_the_checkpoint_cadence_neither_names_nor_refuses_a_run_folder(tmp_path):
    from helpers.runs.run_folder import run_name

    assert run_name("smoke", CADENCE) == "smoke"
    assert run_name("smoke", {"n_train": 100, **CADENCE}) == run_name("smoke", {"n_train": 100})
    open_run("smoke", tmp_path, {"n_train": 100})
    reopened = open_run("smoke", tmp_path, {"n_train": 100, **CADENCE})  # not refused: it changes no result
    assert (reopened.params.checkpoint_every, reopened.params.keep_checkpoints_at_end) == (7, True)
    with pytest.raises(ConfigError, match=r"n_train: 100 -> 200"):
        open_run("smoke", tmp_path, {"n_train": 200, **CADENCE})


@pytest.mark.parametrize("old", ["tokenized", "eval"])
def test_a_run_folder_of_the_old_layout_is_refused_by_name_with_the_fix(tmp_path, old):
    open_run("smoke", tmp_path)
    (tmp_path / old).mkdir()  # what a run made before the stage folders took the stages' names holds
    for opening in (lambda: open_run("smoke", tmp_path), lambda: load_run(tmp_path)):
        with pytest.raises(ConfigError, match=rf"older version of this project \({old}/ is now .*/\).*--overwrite"):
            opening()
    assert open_run("smoke", tmp_path, overwrite=True).dir == tmp_path  # starting afresh clears it
    assert not (tmp_path / old).exists()
