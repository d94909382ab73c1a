"""Extra test sets: named, resolved from the project root, checked before any work."""
import os

import pandas as pd
import pytest

from helpers.core.errors import ConfigError, DataError
from helpers.core.files import PROJECT_ROOT
from helpers.data import extra_sets
from helpers.runs.config import resolve_params


def test_short_is_the_shipped_set_of_single_sentences():
    (name, file), = extra_sets.extra_test_files("short").items()
    frame = extra_sets.load_extra_tests("short")["short"]
    assert name == "short" and file.is_relative_to(PROJECT_ROOT)
    assert len(frame) == 1000 and frame["label"].value_counts().to_dict() == {0: 500, 1: 500}
    assert frame["text"].str.split().str.len().median() < 20  # sentences, not reviews


def test_every_profile_scores_the_short_sentences():
    for profile in ("smoke", "quick", "subset", "full"):
        assert resolve_params(profile).extra_test == "short"


def test_a_list_names_each_set_by_its_stem_and_reads_relative_paths_from_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a notebook runs in notebooks/: the working folder must not matter
    pd.DataFrame({"text": ["great", "awful"], "label": [1, 0]}).to_csv(tmp_path / "mine.csv", index=False)
    relative = os.path.relpath(tmp_path / "mine.csv", PROJECT_ROOT)  # ../../tmp/...: relative to the project
    loaded = extra_sets.load_extra_tests(f"short, {relative}")
    assert list(loaded) == ["short", "mine"] and loaded["mine"]["label"].tolist() == [1, 0]
    assert extra_sets.extra_test_files("") == {}


@pytest.mark.parametrize("spec, message", [
    ("short,short", "two sets would be named 'short'"),
    ("nowhere/missing.csv", "not a Parquet or CSV file"),
])
def test_bad_extra_sets_are_refused_by_name(spec, message):
    with pytest.raises((ConfigError, DataError), match=message):
        extra_sets.extra_test_files(spec)


def test_a_set_named_like_the_test_split_is_refused(tmp_path):
    pd.DataFrame({"text": ["x"], "label": [1]}).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ConfigError, match="'test' is the run's own test split"):
        extra_sets.extra_test_files(str(tmp_path / "test.parquet"))


def test_a_file_without_text_and_label_is_refused_with_the_columns_found(tmp_path):
    pd.DataFrame({"review": ["x"], "label": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['text'\]"):
        extra_sets.extra_test_files(str(tmp_path / "bad.csv"))
