"""Hub datasets' train, test and unsupervised Parquet files, through the hub cache (`snapshot_download`).

`datasets` in offline mode (HF_DATASETS_OFFLINE=1) does not read the hub cache, which `snapshot_download` also
finds offline: one cache serves the models and the data, and a dataset downloaded once loads without a network.
"""
from pathlib import Path

import pandas as pd

from helpers.core.errors import DataError

SPLITS = ("train", "test")  # the labelled splits of a dataset, by the hub's IMDB names
UNSUPERVISED = "unsupervised"  # stanfordnlp/imdb's name for its 50,000 unlabelled reviews


def hub_frames(name):
    """{split: frame} of a hub dataset's train and test splits, from its Parquet files if any, else via `datasets`."""
    folder = _snapshot(name, SPLITS, "use data: sample or a local folder of train/test files")
    shards = {split: _split_files(folder, split) for split in SPLITS}
    if not any(shards.values()):
        import datasets

        loaded = datasets.load_dataset(name)
        if missing := [s for s in SPLITS if s not in loaded]:
            raise DataError(f"hub dataset {name!r} has no {', '.join(missing)} split (it has {', '.join(loaded)})")
        return {split: loaded[split].to_pandas() for split in SPLITS}
    for split, files in shards.items():
        folders = sorted({str(f.parent.relative_to(folder)) for f in files})
        if not files:
            raise DataError(f"hub dataset {name!r} has no {split} split among its Parquet files; "
                            "use a dataset with train and test splits, or a local folder of train/test files")
        if len(folders) > 1:  # one shard list per configuration: concatenating them would mix datasets
            raise DataError(f"hub dataset {name!r} holds several configurations ({', '.join(folders)}); save the "
                            "train and test splits of one into a local folder and give data: that folder")
    return {split: pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) for split, files in shards.items()}


def _snapshot(name, splits, fix):
    """The hub cache's snapshot of dataset `name` with the Parquet files of `splits`, or a DataError ending in `fix`."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = [f"*{split}{tail}" for split in splits for tail in ("-*.parquet", ".parquet")]
    try:
        return Path(snapshot_download(name, repo_type="dataset", allow_patterns=patterns))
    except LocalEntryNotFoundError:  # offline, or no network, and not (completely) in the cache
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "no connection"
        raise DataError(f"hub dataset {name!r} is not in the local cache and the hub cannot be reached ({why}); "
                        f"download it once with internet access, or {fix}") from None
    except RepositoryNotFoundError:  # also private and gated datasets without a token
        raise DataError(f"hub dataset {name!r} was not found (or is private or gated: log in with `hf auth login`); "
                        f"check the name, or {fix}") from None
    except HFValidationError:
        raise DataError(f"{name!r} is neither an existing file or folder nor a hub dataset name (owner/name); "
                        f"{fix}") from None


def _split_files(folder, split):
    """`split`'s sorted Parquet shards in a snapshot, by name (offline, all come back whatever allow_patterns said)."""
    return sorted(f for f in folder.rglob("*.parquet") if f.name == f"{split}.parquet" or f.name.startswith(f"{split}-"))


def hub_unsupervised(name):
    """The texts of a hub dataset's 'unsupervised' split (helpers.data.unlabelled), through the hub cache."""
    folder = _snapshot(name, [UNSUPERVISED], "give unlabelled: sample, or a Parquet/CSV file with a text column")
    if not (files := _split_files(folder, UNSUPERVISED)):
        raise DataError(f"unlabelled {name!r}: the hub dataset has no '{UNSUPERVISED}' split among its Parquet files; "
                        "give 'sample' or a Parquet/CSV file with a text column")
    return pd.concat([pd.read_parquet(f, columns=["text"]) for f in files], ignore_index=True)["text"]
