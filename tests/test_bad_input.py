"""Bad input, one test per case: refused at once with a message naming the file, row or parameter and
the fix, before any model is loaded, and with nothing in an existing run folder changed."""
import json
import math
import warnings

import pytest
import torch
from papermill.translators import translate_parameters
from safetensors.torch import save_file
from transformers import BertConfig, ViTConfig

from helpers.core import models
from helpers.core.errors import ConfigError, DataError
from helpers.data import imdb
from helpers.data.imdb import DataWarning
from helpers.pipeline import stages
from helpers.pipeline.checks import open_run

N_TRAIN, N_TEST = 40, 20


@pytest.fixture(autouse=True)
def no_model_is_loaded(monkeypatch):
    """Every check here must come before a model is loaded: loading one fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    for name in ("load_teacher", "load_student", "load_trained", "_load_classifier"):
        monkeypatch.setattr(models, name, refuse)


def _write(folder, frames, kind="parquet"):
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        for old in folder.glob(f"{split}.*"):
            old.unlink()
        if kind == "parquet":
            frame.to_parquet(folder / f"{split}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{split}.csv", index=False)


@pytest.fixture
def frames(sample):
    return {"train": imdb.stratified_sample(sample["train"], N_TRAIN, 0).reset_index(drop=True),
            "test": imdb.stratified_sample(sample["test"], N_TEST, 0).reset_index(drop=True)}


def _overrides(folder, **more):
    return {"data": str(folder), "n_train": N_TRAIN, "n_test": N_TEST, **more}


def _snapshot(folder):
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def good_run(tmp_path, frames):
    """A run folder whose data stage has run on a local Parquet folder; returns (data folder, run, snapshot)."""
    folder = tmp_path / "imdb"
    _write(folder, frames)
    run = open_run("smoke", tmp_path / "run", _overrides(folder))
    stages.data_stage(run)
    return folder, run, _snapshot(run.dir)


def _damage_train(change, kind="parquet"):
    def damage(folder, frames):
        train = frames["train"].copy()
        change(train)
        _write(folder, {"train": train, "test": frames["test"]}, kind)
    return damage


def _unreadable(folder, frames):
    (folder / "train.parquet").unlink()
    (folder / "train.parquet").mkdir()


def _truncated_parquet(folder, frames):
    raw = (folder / "train.parquet").read_bytes()
    (folder / "train.parquet").write_bytes(raw[: len(raw) // 2])


def _latin1_csv(folder, frames):
    _write(folder, frames, "csv")
    text = (folder / "train.csv").read_text().splitlines()
    text[3] = text[3].replace(" ", " caf\u00e9 ", 1)
    (folder / "train.csv").write_bytes("\n".join(text).encode("latin-1"))


def _set(column, row, value):
    return lambda frame: frame.__setitem__(column, frame[column].astype(object).where(frame.index != row, value))


DATA_CASES = {
    "missing data file": (lambda folder, frames: (folder / "train.parquet").unlink(),
                          r"imdb: no train.parquet or train.csv; the folder needs both"),
    "unreadable data file": (_unreadable, r"train.parquet: cannot be read \(Is a directory\)"),
    "corrupted parquet": (_truncated_parquet, r"train.parquet: not a readable Parquet file .*write it again"),
    "missing label column": (_damage_train(lambda f: f.rename(columns={"label": "stars"}, inplace=True)),
                             r"train.parquet: missing column\(s\) \['label'\]; found \['text', 'stars'\]"),
    "label other than 0/1": (_damage_train(_set("label", 3, 2)),
                             r"train.parquet: 1 label\(s\) are not 0/1, first at row 3 \(found 2\)"),
    "label words that are not sentiments": (
        _damage_train(lambda f: f.__setitem__("label", f["label"].map({0: "bad", 1: "good"}))),
        r"40 label\(s\) are not 0/1, first at row 0 \(found '(good|bad)', '(good|bad)'\)"),
    "NaN label": (_damage_train(_set("label", 7, math.nan)), r"1 label\(s\) are not 0/1, first at row 7 \(found nan\)"),
    "empty review": (_damage_train(_set("text", 5, "")), r"1 review\(s\) are empty, blank or not text, first at row 5"),
    "whitespace-only review": (_damage_train(_set("text", 6, " \n\t ")), r"first at row 6 \(' \\n\\t '"),
    "NaN review": (_damage_train(_set("text", 8, None), kind="csv"), r"train.csv: 1 review\(s\) .* first at row 8"),
    "numbers for reviews": (_damage_train(lambda f: f.__setitem__("text", range(100, 100 + len(f)))),
                            r"40 review\(s\) are empty, blank or not text, first at row 0 \(100;"),
    "non-UTF-8 CSV": (_latin1_csv, r"train.csv: byte \d+ \(line 4\) is not UTF-8 \(b'\\xe9'\); save the file as UTF-8"),
    "a split with one class": (
        lambda folder, frames: _write(folder, {"train": frames["train"], "test": frames["test"].assign(label=1)}),
        r"the test split holds only label 1; both classes are needed"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_refused_and_the_run_folder_is_left_as_it_was(good_run, frames, case):
    folder, run, before = good_run
    damage, message = DATA_CASES[case]
    damage(folder, frames)
    with pytest.raises(DataError, match=message):
        rerun = open_run("smoke", run.dir, _overrides(folder))  # what the first notebook does
        stages.data_stage(rerun)
    assert _snapshot(run.dir) == before


def test_pos_neg_labels_are_mapped_and_said_so(tmp_path, frames):
    train = frames["train"].assign(label=frames["train"]["label"].map({0: "neg", 1: "POS"}))
    _write(tmp_path, {"train": train, "test": frames["test"]}, "csv")
    with pytest.warns(DataWarning, match=r"train.csv: text labels mapped to numbers: 'neg' -> 0, 'POS' -> 1"):
        loaded = imdb.load_imdb(str(tmp_path))
    assert loaded["train"]["label"].tolist() == frames["train"]["label"].tolist()
    assert loaded["train"]["label"].dtype == "int64"


def test_training_reviews_equal_to_test_reviews_are_dropped_and_counted(tmp_path, frames):
    train = frames["train"].copy()
    train.loc[:2, "text"] = frames["test"]["text"].iloc[:3].to_numpy()
    train.loc[3, "text"] = frames["test"]["text"].iloc[3].replace(" ", " <br /><br />", 1)  # equal once cleaned
    train.loc[4, "text"] = frames["test"]["text"].iloc[4] + "  "
    train.loc[5, "text"] = train.loc[6, "text"]  # a copy within the training reviews
    _write(tmp_path, {"train": train, "test": frames["test"]})
    run = open_run("smoke", tmp_path / "run", _overrides(tmp_path))
    dropped = stages.data_stage(run).values["duplicates_dropped"]
    assert sum(n for split in ("train", "val") for n in dropped[split].values()) == 6
    assert dropped["test"] == {"copies": 0, "in_earlier": 0}
    summary = {row["split"]: row for row in json.loads((run.dir / "data" / "summary.json").read_text())}
    assert summary["train"]["reviews"] + summary["val"]["reviews"] == N_TRAIN - 6
    assert summary["train"]["dropped_in_earlier"] == dropped["train"]["in_earlier"]


def test_clean_data_gives_no_warning(tmp_path, frames):
    _write(tmp_path, frames)
    run = open_run("smoke", tmp_path / "run", _overrides(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        stages.data_stage(run)


def test_a_review_of_several_megabytes_is_truncated_not_a_crash(tmp_path, frames):
    train = frames["train"].copy()
    train.loc[4, "text"] = "A long, long film. " * 160_000  # 3 MB
    _write(tmp_path, {"train": train, "test": frames["test"]})
    run = open_run("smoke", tmp_path / "run", _overrides(tmp_path, val_fraction=0.1))
    stages.data_stage(run)
    stages.tokenize_stage(run)
    from helpers.tokens.tokens import load_tokenized

    tokenized = load_tokenized(run.dir / "tokenize")
    lengths = [n for split in ("train", "val") for n in tokenized[split]["full_length"]]
    assert max(lengths) > 500_000
    assert max(len(ids) for split in ("train", "val") for ids in tokenized[split]["input_ids"]) == 64


def test_more_reviews_than_the_data_holds_are_refused_before_the_run_starts(tmp_path, frames):
    _write(tmp_path, frames)  # Parquet: its footer tells the row count
    with pytest.raises(DataError, match="asked for 1000 train reviews but the data has only 40; lower n_train"):
        open_run("smoke", tmp_path / "run", _overrides(tmp_path, n_train=1000))
    with pytest.raises(DataError, match="asked for 500 test reviews but the data has only 20; lower n_test"):
        open_run("smoke", tmp_path / "run", _overrides(tmp_path, n_train=40, n_test=500))
    assert not (tmp_path / "run").exists()


def test_more_training_reviews_than_a_csv_holds_is_refused_in_the_data_stage(tmp_path, frames):
    _write(tmp_path, frames, kind="csv")  # CSV rows can span lines: counted when the data stage reads them
    run = open_run("smoke", tmp_path / "run", _overrides(tmp_path, n_train=1000))
    with pytest.raises(DataError, match="asked for 1000 reviews but the data has only 40; lower n_train/n_test"):
        stages.data_stage(run)


@pytest.mark.parametrize("overrides, message", [
    ({"max_length": 1024}, "max_length 1024 is above the 512 tokens model 'tiny-random-bert' can read; set max_length to 512"),
    ({"lr": 0}, "parameter 'lr': 0.0 is below the minimum"),
    ({"lr": "-2e-5"}, "parameter 'lr': -2e-05 is below the minimum"),
    ({"batch_size": 0}, "parameter 'batch_size': 0 is below the minimum 1"),
    ({"epochs": -1}, "parameter 'epochs': -1 is below the minimum 1"),
    ({"student_epochs": 0}, "parameter 'student_epochs': 0 is below the minimum 1"),
    ({"learning_rate": 1e-4}, "unknown parameter(s) 'learning_rate'; known: data, "),
    ({"data": "/no/such/folder"}, "data '/no/such/folder': not a folder"),
    ({"model": "/no/such/model"}, "model folder '/no/such/model' has no config.json"),
])
def test_bad_parameters_are_refused_before_the_run_folder_is_touched(good_run, overrides, message):
    folder, run, before = good_run
    with pytest.raises((ConfigError, DataError)) as error:
        open_run("smoke", run.dir, _overrides(folder, **overrides))
    assert message in str(error.value)
    assert _snapshot(run.dir) == before


def test_an_unknown_profile_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'smok'; choose one of: full, quick, smoke, subset"):
        open_run("smok", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_model_that_cannot_classify_text_is_refused(tmp_path):
    ViTConfig().save_pretrained(tmp_path / "vit")
    save_file({"weight": torch.zeros(1)}, tmp_path / "vit" / "model.safetensors")
    with pytest.raises(ConfigError, match="model '.*vit' is a 'vit' model, which transformers cannot use to classify text"):
        open_run("smoke", tmp_path / "run", {"model": str(tmp_path / "vit")})
    assert not (tmp_path / "run").exists()


def test_a_model_folder_without_safetensors_weights_is_refused(tmp_path):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "pytorch_model.bin").write_bytes(b"pickled weights run code when loaded")
    with pytest.raises(ConfigError, match="has no .safetensors weights"):
        open_run("smoke", tmp_path / "run", {"student_model": str(tmp_path / "bert")})


def test_a_run_folder_of_another_configuration_is_refused_unless_overwritten(good_run):
    folder, run, before = good_run
    with pytest.raises(ConfigError, match=r"made with profile 'smoke' and other parameters \(lr: 0.001 -> 0.002.*--overwrite"):
        open_run("smoke", run.dir, _overrides(folder, lr=0.002))
    assert _snapshot(run.dir) == before
    with pytest.raises(DataError):  # a bad input with overwrite: refused before the folder is emptied
        open_run("smoke", run.dir, _overrides(folder / "missing", lr=0.002), overwrite=True)
    assert _snapshot(run.dir) == before
    fresh = open_run("smoke", run.dir, _overrides(folder, lr=0.002), overwrite=True)
    assert fresh.params.lr == 0.002 and not (run.dir / "data").exists()


@pytest.mark.parametrize("value", ["'); import os; os.system('touch PWNED'); ('", "__import__('os').getcwd()", '"""\n1'])
def test_papermill_parameters_arrive_as_data_never_as_code(tmp_path, value, monkeypatch):
    """papermill writes parameters into the notebook as Python literals; exec that cell as the kernel would."""
    monkeypatch.chdir(tmp_path)
    cell = translate_parameters("python", "python", {"profile": "smoke", "overrides": {"data": value}}, "")
    namespace = {}
    exec(cell, namespace)  # noqa: S102 - the point of the test
    assert namespace["overrides"] == {"data": value} and not (tmp_path / "PWNED").exists()
    with pytest.raises(ConfigError, match="parameter 'lr': expected float"):  # and numbers are parsed, not evaluated
        open_run("smoke", tmp_path / "run", {"lr": value})


def test_nothing_loads_weights_unsafely():
    """Weights come from safetensors only; torch.load only with weights_only=True; no remote code."""
    from pathlib import Path

    import helpers

    lines = [(path.name, line) for path in Path(helpers.__file__).parent.rglob("*.py") for line in path.read_text().splitlines()]
    assert not [line for _, line in lines if "trust_remote_code" in line]
    loads = [(name, line) for name, line in lines if "torch.load(" in line]
    weights = [(name, line) for name, line in lines if "ForSequenceClassification.from_pretrained(" in line]
    assert loads and weights  # the scan sees the calls it checks
    assert all("weights_only=True" in line for _, line in loads), loads
    assert all("use_safetensors=True" in line for _, line in weights), weights
