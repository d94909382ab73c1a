import pytest

from helpers.core.errors import ConfigError
from helpers.runs.config import Params, available_profiles, make_params, read_profile, resolve_params

REQUIRED_NAMES = ("data", "model", "student_model", "n_train", "n_test", "max_length", "epochs", "batch_size", "lr", "seed")


def test_the_names_outside_scripts_rely_on_exist():
    for name in REQUIRED_NAMES:
        assert name in Params.__dataclass_fields__


@pytest.mark.parametrize("profile", ["smoke", "quick", "subset", "full"])
def test_every_profile_validates(profile):
    params = resolve_params(profile)
    assert isinstance(params, Params)
    assert profile in available_profiles()


def test_profiles_differ_where_they_should():
    assert resolve_params("smoke").model == "tiny-random-bert"
    assert resolve_params("quick").model == "minilm-l6"
    assert resolve_params("subset").model == "bert-base-uncased"
    full = resolve_params("full")
    assert full.n_train is None and full.n_test is None and full.data == "stanfordnlp/imdb"


def test_command_line_strings_are_coerced_to_field_types():
    params = resolve_params("quick", {"n_train": "500", "lr": "3e-5", "n_test": "none", "model": "bert-base-uncased"})
    assert params.n_train == 500 and isinstance(params.n_train, int)
    assert params.lr == pytest.approx(3e-5)
    assert params.n_test is None
    assert params.model == "bert-base-uncased"


@pytest.mark.parametrize("overrides, words", [
    ({"learning_rate": 1e-4}, ["unknown parameter", "'learning_rate'", "known:"]),
    ({"n_train": "many"}, ["'n_train'", "expected int", "'many'"]),
    ({"n_train": 10.5}, ["'n_train'", "expected int"]),
    ({"epochs": True}, ["'epochs'", "expected int"]),
    ({"lr": "nan"}, ["'lr'", "expected float"]),
    ({"alpha": 1.5}, ["'alpha'", "above the maximum"]),
    ({"precision": "fp8"}, ["'precision'", "not one of"]),
    ({"model": 3}, ["'model'", "expected str"]),
    ({"seed": None}, ["'seed'", "expected int"]),
])
def test_bad_values_are_refused_by_name(overrides, words):
    with pytest.raises(ConfigError) as error:
        resolve_params("quick", overrides)
    for word in words:
        assert word in str(error.value)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'quik'.*quick"):
        read_profile("quik")


def test_defaults_are_valid_params():
    assert make_params({}) == Params()


@pytest.mark.parametrize("raw, expected", [("true", True), ("False", False), ("1", True), ("no", False), (True, True)])
def test_switches_accept_the_usual_words(raw, expected):
    assert resolve_params("quick", {"group_by_length": raw}).group_by_length is expected


def test_a_switch_refuses_other_words():
    with pytest.raises(ConfigError, match="'group_by_length': expected bool"):
        resolve_params("quick", {"group_by_length": "maybe"})


def test_checkpoints_follow_the_clock_unless_a_step_cadence_is_set():
    params = make_params({})
    assert params.checkpoint_every == 0 and params.checkpoint_minutes > 0  # minutes, by default
    assert params.keep_checkpoints_at_end is False  # a finished stage's checkpoints are deleted
    assert resolve_params("quick", {"checkpoint_every": "25", "checkpoint_minutes": "7.5"}).checkpoint_minutes == 7.5
    with pytest.raises(ConfigError, match="'checkpoint_minutes': 0.0 is below the minimum"):
        resolve_params("quick", {"checkpoint_minutes": 0})
