"""Stage 1: load IMDB, check it, draw seeded stratified subsets, split off validation, drop duplicates, save.

`data` is "sample" (the stratified sample in `helpers/data/sample_data/`, offline default), a local folder of
train/test Parquet or CSV files with `text` and `label` (or the original `aclImdb/` layout), or a hub dataset
name such as "stanfordnlp/imdb" (through the hub cache, helpers.data.hub). Splits travel as pandas frames.
"""
import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from helpers.core.errors import DataError
from helpers.core.files import project_path, write_frame
from helpers.core.sentiment import LABEL_WORDS
from helpers.data.hub import SPLITS, hub_frames

SAMPLE_DIR = Path(__file__).parent / "sample_data"  # the shipped sample, drawn by helpers.data.sample
SAMPLE_SIZES = {"train": 2000, "test": 1000, "unlabelled": 3000}
IMDB_SIZES = {"train": 25000, "test": 25000, "unlabelled": 50000}  # the Large Movie Review Dataset's splits
LINE_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)  # IMDB marks line breaks with HTML tags
LEAK_ORDER = ("test", "val", "train")  # a review in two splits stays in the first of these


def clean_review(text):
    """A review with IMDB's <br /> tags and runs of whitespace as one space: what duplicates are compared by."""
    return " ".join(LINE_BREAK.sub(" ", text).split())


def preview(text, chars):
    """A cleaned review (`clean_review`) cut to at most `chars` characters, for a table or a line of output."""
    text = clean_review(text)
    return text if len(text) <= chars else text[:chars] + "..."


class DataWarning(UserWarning):
    """Input data that can be used but deserves a look (mapped labels)."""


def load_imdb(source):
    """The train and test reviews of `source` as pandas frames with `text` and `label`."""
    folder = _local_folder(source)
    if folder is None:  # a hub dataset (helpers.data.hub), checked like every other source
        return {split: _checked(frame, f"{source}[{split}]") for split, frame in hub_frames(source).items()}
    if (folder / "train" / "pos").is_dir():
        return {split: _load_aclimdb_split(folder / split) for split in SPLITS}
    return {split: _checked(read_table(file), file) for split, file in _data_files(folder).items()}


def _local_folder(source):
    """The folder `source` names; None for a hub dataset name."""
    if source == "sample":
        return SAMPLE_DIR
    path = project_path(source)
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")):
        raise DataError(f"data {source!r}: not a folder; give a folder holding train and test files")
    return None


def check_source(source, sizes=None):
    """The quick checks before any stage, from headers and footers only: the files exist, are readable, have `text`
    and `label`, and Parquet files hold the `sizes` asked for ({split: n}). Hub names are checked on loading."""
    folder = _local_folder(source)
    if folder is None or (folder / "train" / "pos").is_dir():
        return
    for split, file in _data_files(folder).items():
        _require_columns(column_names(file), file)
        wanted = (sizes or {}).get(split)
        if wanted is not None and file.suffix == ".parquet" and wanted > parquet_rows(file):
            raise DataError(f"asked for {wanted} {split} reviews but the data has only {parquet_rows(file)}; "
                            f"lower n_{'train' if split == 'train' else 'test'} or set it to none (all of them)")


def parquet_rows(file):
    """Rows of a Parquet file, read from its footer alone."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(file).metadata.num_rows


def _data_files(folder):
    files = {}
    for split in SPLITS:
        if not (found := sorted(folder.glob(f"{split}.parquet")) or sorted(folder.glob(f"{split}.csv"))):
            raise DataError(f"{folder}: no {split}.parquet or {split}.csv; the folder needs both train and test files")
        files[split] = found[0]
    return files


def read_table(file):
    import datasets

    column_names(file)  # refuses unreadable, truncated and non-UTF-8 files with a clear message
    try:
        loaded = datasets.load_dataset(file.suffix.lstrip("."), data_files={"data": str(file)}, split="data")
    except Exception as error:  # noqa: BLE001 - the parsers raise many types; all mean "cannot parse"
        cause = error.__cause__ or error
        raise DataError(f"{file}: cannot be parsed ({type(cause).__name__}: {cause}); check that it is a "
                        "well-formed table with text and label columns") from None
    return loaded.to_pandas()


def column_names(file):
    """The columns of a Parquet or CSV file, from its footer or header line; unreadable files refused by name."""
    import pyarrow.parquet as pq

    try:
        with open(file, "rb") as handle:
            raw = handle.read() if file.suffix == ".csv" else b""
    except OSError as error:
        raise DataError(f"{file}: cannot be read ({error.strerror}); it must be a file you may read") from None
    if file.suffix == ".parquet":
        try:
            return pq.ParquetFile(file).schema_arrow.names  # a truncated or foreign file fails here, at once
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is both
            raise DataError(f"{file}: not a readable Parquet file ({error}); write it again, e.g. with pandas "
                            "frame.to_parquet(path), or replace it with a CSV file of text,label columns") from None
    _utf8_text(raw, file)  # refuses non-UTF-8 bytes, naming where they are
    # "utf-8-sig" drops a spreadsheet's byte-order mark (as the full load does): column 'text', not '\ufefftext'
    return next(csv.reader(io.StringIO(raw.decode("utf-8-sig").partition("\n")[0])), [])


def _require_columns(columns, origin):
    if missing := [c for c in ("text", "label") if c not in columns]:
        raise DataError(f"{origin}: missing column(s) {missing}; found {list(columns)}. "
                        "Rename the review column to 'text' and the 0/1 sentiment column to 'label'.")


def _utf8_text(raw, file):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(f"{file}: byte {error.start} (line {line}) is not UTF-8 ({raw[error.start:error.end]!r}); save "
                        f"the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {file.name} > fixed.csv`, or in pandas "
                        "pd.read_csv(path, encoding='latin-1').to_csv(new_path, index=False)") from None


def _load_aclimdb_split(folder):
    rows = [(_utf8_text(file.read_bytes(), file), label)
            for label, name in ((0, "neg"), (1, "pos")) for file in sorted((folder / name).glob("*.txt"))]
    if not rows:
        raise DataError(f"{folder}: no reviews in pos/*.txt or neg/*.txt")
    return _checked(pd.DataFrame(rows, columns=["text", "label"]), folder)


def _checked(frame, origin):
    """Keep `text` and `label`, refusing anything the model cannot learn from."""
    _require_columns(frame.columns, origin)
    frame = frame[["text", "label"]].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{origin}: holds no reviews")
    rows = np.flatnonzero(~frame["text"].map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy())
    if len(rows):
        raise DataError(f"{origin}: {len(rows)} review(s) are empty, blank or not text, first at row {rows[0]} "
                        f"({frame['text'].tolist()[rows[0]]!r}; rows count from 0, header excluded); remove those rows, "
                        "e.g. frame[frame.text.notna() & (frame.text.str.strip() != '')]")
    return frame.assign(label=_labels(frame["label"], origin))


def _labels(column, origin):
    """Labels as 0/1 integers. Words like "pos"/"neg" are mapped (and said so); anything else is refused."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        mapped = column.where(column.isin([0, 1]))
    else:
        mapped = column.map(lambda v: LABEL_WORDS.get(str(v).strip().lower()) if isinstance(v, str) else None)
    if len(rows := np.flatnonzero(mapped.isna().to_numpy())):
        found = ", ".join(repr(v) for v in column.iloc[rows].drop_duplicates().tolist()[:5])
        raise DataError(f"{origin}: {len(rows)} label(s) are not 0/1, first at row {rows[0]} (found {found}); "
                        "labels must be 0 (negative) or 1 (positive); the words "
                        f"{', '.join(sorted(LABEL_WORDS))} are understood too")
    if not pd.api.types.is_numeric_dtype(column):
        pairs = sorted({(str(v), int(m)) for v, m in zip(column, mapped)}, key=lambda p: (p[1], p[0]))
        warnings.warn(f"{origin}: text labels mapped to numbers: "
                      + ", ".join(f"{v!r} -> {m}" for v, m in pairs), DataWarning, stacklevel=3)
    return mapped.astype("int64")


def stratified_sample(frame, n, seed):
    """`n` rows with the label balance of `frame`, shuffled; all rows (shuffled) when n is None."""
    if n is None or n == len(frame):
        return frame.sample(frac=1.0, random_state=seed)
    if n > len(frame):
        raise DataError(f"asked for {n} reviews but the data has only {len(frame)}; lower n_train/n_test or set it to none")
    sample, _ = train_test_split(frame, train_size=n, stratify=frame["label"], random_state=seed)
    return sample


def make_splits(params):
    """Train, validation and test frames for the run, no review in two of them (`without_duplicates`)."""
    return without_duplicates(draw_splits(params))[0]


def draw_splits(params):
    """Train, validation and test frames as drawn: subset, then carve validation from train."""
    frames = load_imdb(params.data)
    train = stratified_sample(frames["train"], params.n_train, params.seed)
    test = stratified_sample(frames["test"], params.n_test, params.seed)
    for name, frame in (("train", train), ("test", test)):
        if frame["label"].nunique() < 2:
            raise DataError(f"the {name} split holds only label {frame['label'].iloc[0]}; both classes are needed")
    train, val = train_test_split(train, test_size=params.val_fraction, stratify=train["label"], random_state=params.seed)
    return {name: f.reset_index(drop=True) for name, f in (("train", train), ("val", val), ("test", test))}


def without_duplicates(splits):
    """The splits with no review twice across them (after `clean_review`) and {split: {"copies": own extra copies,
    "in_earlier": equal to one of a split before it in LEAK_ORDER}} dropped; test keeps its own copies."""
    seen, kept, dropped = set(), {}, {}
    for name in LEAK_ORDER:
        keys = splits[name]["text"].map(clean_review)
        in_earlier = keys.isin(seen).to_numpy()
        copies = keys.duplicated().to_numpy() & ~in_earlier if name != "test" else np.zeros(len(keys), bool)
        kept[name] = splits[name][~(in_earlier | copies)].reset_index(drop=True)
        dropped[name] = {"copies": int(copies.sum()), "in_earlier": int(in_earlier.sum())}
        seen.update(keys)
    return {name: kept[name] for name in splits}, {name: dropped[name] for name in splits}


def save_splits(splits, folder):
    for name, frame in splits.items():
        write_frame(Path(folder) / f"{name}.parquet", frame, index=False)


def load_splits(folder, names=("train", "val", "test")):
    return {name: pd.read_parquet(Path(folder) / f"{name}.parquet") for name in names}


def split_summary(splits, dropped=None):
    """One row per split: reviews, labels, length in words and the duplicates `dropped` from it (`without_duplicates`)."""
    rows = []
    for name, frame in splits.items():
        words, labels = frame["text"].str.split().str.len(), frame["label"]
        rows.append({"split": name, "reviews": len(frame), "negative": int((labels == 0).sum()),
                     "positive": int((labels == 1).sum()), "positive_share": round(float(labels.mean()), 3),
                     "median_words": int(words.median()), "max_words": int(words.max()),
                     **{f"dropped_{kind}": n for kind, n in (dropped or {}).get(name, {}).items()}})
    return pd.DataFrame(rows).set_index("split")


def check_labelled_file(file):
    """The quick check of one extra test file: it exists, can be read and has `text` and `label`."""
    file = Path(file)
    if not file.is_file() or file.suffix not in (".parquet", ".csv"):
        raise DataError(f"{file}: not a Parquet or CSV file; an extra test set is a .parquet or .csv file with "
                        "text and label columns")
    _require_columns(column_names(file), file)


def load_labelled_file(file):
    """One Parquet or CSV file of reviews with `text` and `label`, checked like the train and test files."""
    check_labelled_file(file)
    return _checked(read_table(Path(file)), Path(file))
