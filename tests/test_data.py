import pandas as pd
import pytest
from hub_cache import write_dataset

from helpers.data import imdb
from helpers.runs.config import resolve_params


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
    return {split: imdb.stratified_sample(frame, n, 0).reset_index(drop=True) for split, frame in sample.items()}


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_local_parquet_and_csv_folders_load(tmp_path, sample, kind):
    small = _small(sample)
    _write(tmp_path, small, kind)
    loaded = imdb.load_imdb(str(tmp_path))
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(loaded[split], small[split])


def test_original_aclimdb_layout_loads(tmp_path, sample):
    small = _small(sample, 6)
    for split, frame in small.items():
        for i, (text, label) in enumerate(zip(frame["text"], frame["label"])):
            folder = tmp_path / "aclImdb" / split / ("pos" if label else "neg")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{8 if label else 2}.txt").write_text(text, encoding="utf-8")
    loaded = imdb.load_imdb(str(tmp_path / "aclImdb"))
    for split in ("train", "test"):
        assert sorted(loaded[split]["text"]) == sorted(small[split]["text"])
        assert loaded[split]["label"].sum() == small[split]["label"].sum()


def test_stratified_sample_is_seeded_and_balanced(sample):
    a = imdb.stratified_sample(sample["train"], 100, seed=1)
    b = imdb.stratified_sample(sample["train"], 100, seed=1)
    c = imdb.stratified_sample(sample["train"], 100, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.index.equals(c.index)
    assert a["label"].sum() == 50


def test_validation_comes_from_train_and_test_stays_apart(sample):
    params = resolve_params("smoke", {"n_train": 200, "n_test": 60, "val_fraction": 0.2})
    splits = imdb.make_splits(params)
    assert {k: len(v) for k, v in splits.items()} == {"train": 160, "val": 40, "test": 60}
    train_texts = set(sample["train"]["text"])
    assert set(splits["val"]["text"]) <= train_texts
    assert not set(splits["val"]["text"]) & set(splits["train"]["text"])
    assert set(splits["test"]["text"]) <= set(sample["test"]["text"])
    assert splits["val"]["label"].sum() == 20  # stratified
    assert splits["train"]["label"].iloc[:20].nunique() == 2  # shuffled, not negatives first


def test_planted_duplicates_leave_no_review_in_two_splits(tmp_path, sample):
    small = _small(sample, 60)
    train, test = small["train"].copy(), small["test"].copy()
    train.loc[:4, "text"] = [t.replace(" ", "<br /><br />", 1) + " " for t in test["text"].iloc[:5]]  # test reviews
    train.loc[5:9, "text"] = train["text"].iloc[10:15].to_numpy()  # copies within train (some will land in val)
    test.loc[20, "text"] = test.loc[21, "text"]  # a copy within test, which the test split keeps
    _write(tmp_path, {"train": train, "test": test}, "parquet")
    params = resolve_params("smoke", {"data": str(tmp_path), "n_train": 60, "n_test": 60, "val_fraction": 0.25})
    splits, dropped = imdb.without_duplicates(imdb.draw_splits(params))
    keys = {name: frame["text"].map(imdb.clean_review) for name, frame in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(keys[a]) & set(keys[b]), (a, b)
    assert keys["train"].is_unique and keys["val"].is_unique and len(splits["test"]) == 60
    assert sum(n for split in ("train", "val") for n in dropped[split].values()) == 10
    assert len(splits["train"]) + len(splits["val"]) == 50 and dropped["test"] == {"copies": 0, "in_earlier": 0}
    for name, frame in imdb.make_splits(params).items():
        pd.testing.assert_frame_equal(frame, splits[name])


def test_clean_review_is_what_duplicates_are_compared_by():
    assert imdb.clean_review("  Great<br /><br />film.<BR>A\tmust   see. ") == "Great film. A must see."
    assert imdb.preview("A<br />b", 10) == "A b" and imdb.preview("abcdef", 3) == "abc..."


def test_splits_round_trip_through_the_run_folder(tmp_path, smoke_params):
    splits = imdb.make_splits(smoke_params)
    imdb.save_splits(splits, tmp_path)
    loaded = imdb.load_splits(tmp_path)
    for name in splits:
        pd.testing.assert_frame_equal(loaded[name], splits[name])


def test_summary_counts_labels(smoke_params):
    summary = imdb.split_summary(imdb.make_splits(smoke_params))
    assert summary.loc["train", "negative"] == summary.loc["train", "positive"]
    assert summary["reviews"].sum() == smoke_params.n_train + smoke_params.n_test


def test_a_csv_with_a_byte_order_mark_loads_as_one_without(tmp_path, sample):
    """Spreadsheets' "CSV UTF-8" starts the file with a byte-order mark (EF BB BF) before the header."""
    small = _small(sample)
    _write(tmp_path / "plain", small, "csv")
    for split in small:
        raw = (tmp_path / "plain" / f"{split}.csv").read_bytes()
        (tmp_path / "bom").mkdir(exist_ok=True)
        (tmp_path / "bom" / f"{split}.csv").write_bytes(b"\xef\xbb\xbf" + raw)
    imdb.check_source(str(tmp_path / "bom"), {"train": 20, "test": 20})
    with_mark, without = imdb.load_imdb(str(tmp_path / "bom")), imdb.load_imdb(str(tmp_path / "plain"))
    for split in small:
        pd.testing.assert_frame_equal(with_mark[split], without[split])


@pytest.fixture
def hub_cache_dir(tmp_path, monkeypatch):
    """An empty hub cache that `snapshot_download` reads, offline whatever the environment says."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_a_cached_hub_dataset_loads_offline_from_its_parquet_shards(hub_cache_dir, sample):
    small = _small(sample)
    unlabelled = small["train"].assign(label=-1)  # would be refused if it were read
    write_dataset(hub_cache_dir, "someone/imdb", {
        "plain_text/train-00000-of-00002.parquet": small["train"].iloc[:12],
        "plain_text/train-00001-of-00002.parquet": small["train"].iloc[12:],
        "plain_text/test-00000-of-00001.parquet": small["test"],
        "plain_text/unsupervised-00000-of-00001.parquet": unlabelled,
    })
    loaded = imdb.load_imdb("someone/imdb")
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(loaded[split], small[split])  # shards concatenated in order


def test_a_hub_dataset_without_parquet_files_goes_through_datasets(hub_cache_dir, sample, monkeypatch):
    import datasets

    small = _small(sample)
    folder = write_dataset(hub_cache_dir, "someone/csv-imdb", {})
    (folder / "train.csv").write_text("text,label\n")
    asked = []

    def load_dataset(name):
        asked.append(name)
        return datasets.DatasetDict({s: datasets.Dataset.from_pandas(f) for s, f in small.items()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    loaded = imdb.load_imdb("someone/csv-imdb")
    assert asked == ["someone/csv-imdb"]
    pd.testing.assert_frame_equal(loaded["test"], small["test"])


def test_a_hub_dataset_not_in_the_cache_is_refused_offline_with_the_fix(hub_cache_dir):
    with pytest.raises(imdb.DataError, match=r"not in the local cache and the hub cannot be reached "
                                             r"\(HF_HUB_OFFLINE is set\).*data: sample"):
        imdb.load_imdb("someone/never-downloaded")


def test_the_checks_before_a_run_leave_hub_names_to_the_data_stage(monkeypatch):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("check_source asked the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    imdb.check_source("stanfordnlp/imdb", {"train": 100, "test": 100})
