"""Stage 1: load IMDB, check it, draw seeded stratified subsets, split off validation, save.

Sources, by the `data` parameter:
- "sample": the stratified sample committed in `helpers/sample_data/` (offline default);
- a local folder holding train/test as Parquet or CSV files with `text` and `label` columns,
  or the original `aclImdb/` layout (train/pos/*.txt, train/neg/*.txt, test/...);
- anything else is a Hugging Face hub dataset name, e.g. "stanfordnlp/imdb".

Splits travel as pandas frames (`Dataset.to_pandas()`, the documented route on NumPy 2).
"""
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from helpers.io import write_frame

SAMPLE_DIR = Path(__file__).parent / "sample_data"
SPLITS = ("train", "test")
LABEL_NAMES = {0: "negative", 1: "positive"}


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, the row and the fix."""


def load_imdb(source):
    """The train and test reviews of `source` as pandas frames with `text` and `label`."""
    if source == "sample":
        return _load_files(SAMPLE_DIR)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "train" / "pos").is_dir():
            return {split: _load_aclimdb_split(path / split) for split in SPLITS}
        return _load_files(path)
    if path.exists() or source.startswith((".", "/", "~")):
        raise DataError(f"data {source!r}: not a folder; give a folder holding train and test files")
    return _load_hub(source)


def _load_files(folder):
    """Parquet or CSV train/test files from a folder, through `datasets`."""
    import datasets

    frames = {}
    for split in SPLITS:
        found = sorted(folder.glob(f"{split}.parquet")) or sorted(folder.glob(f"{split}.csv"))
        if not found:
            raise DataError(f"{folder}: no {split}.parquet or {split}.csv; the folder needs both train and test files")
        kind = found[0].suffix.lstrip(".")
        ds = datasets.load_dataset(kind, data_files={split: str(found[0])}, split=split)
        frames[split] = _checked(ds.to_pandas(), found[0])
    return frames


def _load_aclimdb_split(folder):
    rows = []
    for label, name in ((0, "neg"), (1, "pos")):
        for file in sorted((folder / name).glob("*.txt")):
            rows.append((file.read_text(encoding="utf-8"), label))
    if not rows:
        raise DataError(f"{folder}: no reviews in pos/*.txt or neg/*.txt")
    return _checked(pd.DataFrame(rows, columns=["text", "label"]), folder)


def _load_hub(name):
    import datasets

    loaded = datasets.load_dataset(name)
    missing = [s for s in SPLITS if s not in loaded]
    if missing:
        raise DataError(f"hub dataset {name!r} has no {', '.join(missing)} split (it has {', '.join(loaded)})")
    return {split: _checked(loaded[split].to_pandas(), f"{name}[{split}]") for split in SPLITS}


def _checked(frame, origin):
    """Keep `text` and `label`, refusing anything the model cannot learn from."""
    missing = [c for c in ("text", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {missing}; found {list(frame.columns)}. "
                        "Rename the review column to 'text' and the 0/1 sentiment column to 'label'.")
    frame = frame[["text", "label"]].reset_index(drop=True)
    bad_label = ~frame["label"].isin([0, 1])
    if bad_label.any():
        row = int(bad_label.idxmax())
        raise DataError(f"{origin}: row {row} has label {frame['label'].tolist()[row]!r}; labels must be 0 (negative) or 1 (positive)")
    bad_text = ~frame["text"].map(lambda t: isinstance(t, str) and bool(t.strip()))
    if bad_text.any():
        row = int(bad_text.idxmax())
        raise DataError(f"{origin}: row {row} has an empty or non-text review ({frame['text'].tolist()[row]!r}); remove such rows")
    return frame.astype({"label": "int64"})


def stratified_sample(frame, n, seed):
    """`n` rows with the label balance of `frame`, shuffled; all rows (shuffled) when n is None."""
    if n is None or n == len(frame):
        return frame.sample(frac=1.0, random_state=seed)
    if n > len(frame):
        raise DataError(f"asked for {n} reviews but the data has only {len(frame)}; lower n_train/n_test or set it to none")
    sample, _ = train_test_split(frame, train_size=n, stratify=frame["label"], random_state=seed)
    return sample


def make_splits(params):
    """Train, validation and test frames for the run: subset, then carve validation from train."""
    frames = load_imdb(params.data)
    train = stratified_sample(frames["train"], params.n_train, params.seed)
    test = stratified_sample(frames["test"], params.n_test, params.seed)
    for name, frame in (("train", train), ("test", test)):
        if frame["label"].nunique() < 2:
            raise DataError(f"the {name} split holds only label {frame['label'].iloc[0]}; both classes are needed")
    train, val = train_test_split(train, test_size=params.val_fraction, stratify=train["label"], random_state=params.seed)
    return {name: f.reset_index(drop=True) for name, f in (("train", train), ("val", val), ("test", test))}


def save_splits(splits, folder):
    for name, frame in splits.items():
        write_frame(Path(folder) / f"{name}.parquet", frame, index=False)


def load_splits(folder, names=("train", "val", "test")):
    return {name: pd.read_parquet(Path(folder) / f"{name}.parquet") for name in names}


def split_summary(splits):
    """Reviews, label balance and length in words, one row per split."""
    rows = []
    for name, frame in splits.items():
        words = frame["text"].str.split().str.len()
        rows.append({
            "split": name,
            "reviews": len(frame),
            "negative": int((frame["label"] == 0).sum()),
            "positive": int((frame["label"] == 1).sum()),
            "positive_share": round(float(frame["label"].mean()), 3),
            "median_words": int(words.median()),
            "max_words": int(words.max()),
        })
    return pd.DataFrame(rows).set_index("split")
