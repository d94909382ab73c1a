import pandas as pd
import pytest

from helpers import data
from helpers.config import resolve_params


def test_sample_is_balanced_and_sized(sample):
    assert len(sample["train"]) == 2000 and len(sample["test"]) == 1000
    for frame in sample.values():
        assert list(frame.columns) == ["text", "label"]
        assert frame["label"].value_counts().to_dict() == {0: len(frame) // 2, 1: len(frame) // 2}


def _write(folder, frames, kind):
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        if kind == "parquet":
            frame.to_parquet(folder / f"{split}.parquet")
        else:
            frame.to_csv(folder / f"{split}.csv", index=False)


def _small(sample, n=20):
    return {split: data.stratified_sample(frame, n, 0).reset_index(drop=True) for split, frame in sample.items()}


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_local_parquet_and_csv_folders_load(tmp_path, sample, kind):
    small = _small(sample)
    _write(tmp_path, small, kind)
    loaded = data.load_imdb(str(tmp_path))
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(loaded[split], small[split])


def test_original_aclimdb_layout_loads(tmp_path, sample):
    small = _small(sample, 6)
    for split, frame in small.items():
        for i, (text, label) in enumerate(zip(frame["text"], frame["label"])):
            folder = tmp_path / "aclImdb" / split / ("pos" if label else "neg")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{8 if label else 2}.txt").write_text(text, encoding="utf-8")
    loaded = data.load_imdb(str(tmp_path / "aclImdb"))
    for split in ("train", "test"):
        assert sorted(loaded[split]["text"]) == sorted(small[split]["text"])
        assert loaded[split]["label"].sum() == small[split]["label"].sum()


def test_stratified_sample_is_seeded_and_balanced(sample):
    a = data.stratified_sample(sample["train"], 100, seed=1)
    b = data.stratified_sample(sample["train"], 100, seed=1)
    c = data.stratified_sample(sample["train"], 100, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.index.equals(c.index)
    assert a["label"].sum() == 50


def test_validation_comes_from_train_and_test_stays_apart(sample):
    params = resolve_params("smoke", {"n_train": 200, "n_test": 60, "val_fraction": 0.2})
    splits = data.make_splits(params)
    assert {k: len(v) for k, v in splits.items()} == {"train": 160, "val": 40, "test": 60}
    train_texts = set(sample["train"]["text"])
    assert set(splits["val"]["text"]) <= train_texts
    assert not set(splits["val"]["text"]) & set(splits["train"]["text"])
    assert set(splits["test"]["text"]) <= set(sample["test"]["text"])
    assert splits["val"]["label"].sum() == 20  # stratified
    assert splits["train"]["label"].iloc[:20].nunique() == 2  # shuffled, not negatives first


def test_splits_round_trip_through_the_run_folder(tmp_path, smoke_params):
    splits = data.make_splits(smoke_params)
    data.save_splits(splits, tmp_path)
    loaded = data.load_splits(tmp_path)
    for name in splits:
        pd.testing.assert_frame_equal(loaded[name], splits[name])


def test_summary_counts_labels(smoke_params):
    summary = data.split_summary(data.make_splits(smoke_params))
    assert summary.loc["train", "negative"] == summary.loc["train", "positive"]
    assert summary["reviews"].sum() == smoke_params.n_train + smoke_params.n_test
