"""Hub datasets through the hub cache: a dataset's train and test Parquet files via huggingface_hub.

`datasets` in offline mode (HF_DATASETS_OFFLINE=1) does not read the hub cache, so the files are
fetched with `snapshot_download`, which also finds them there offline: one cache serves the
models and the data, and a dataset downloaded once loads without a network.
"""
from pathlib import Path

import pandas as pd

from helpers.core.errors import DataError

SPLITS = ("train", "test")  # the labelled splits of a dataset, by the hub's IMDB names

# the hub files of the train and test splits (the unlabelled reviews of the "unsupervised" split: hub_unsupervised)
HUB_PATTERNS = [f"*{split}{tail}" for split in SPLITS for tail in ("-*.parquet", ".parquet")]


def hub_frames(name):
    """{split: frame} of a hub dataset's train and test splits, from its Parquet files when it has them
    (as stanfordnlp/imdb does), else through `datasets.load_dataset`; not yet checked (helpers.data.imdb)."""
    shards = _hub_parquet_shards(name)
    if not shards:
        return _frames_with_datasets(name)
    return {split: pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) for split, files in shards.items()}


def _hub_parquet_shards(name):
    """{split: sorted Parquet shards} of a hub dataset, downloaded into (or found in) the hub cache;
    {} when the dataset has no train/test Parquet files.

    The hub cache is read through `snapshot_download` because `datasets` in offline mode
    (HF_DATASETS_OFFLINE=1) does not look there: a dataset downloaded once then loads offline.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(name, repo_type="dataset", allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError:  # offline, or no network, and not (completely) in the cache
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "no connection"
        raise DataError(f"hub dataset {name!r} is not in the local cache and the hub cannot be reached ({why}); "
                        "download it once with internet access, or use data: sample or a local folder of "
                        "train/test files") from None
    except RepositoryNotFoundError:  # also private and gated datasets without a token
        raise DataError(f"hub dataset {name!r} was not found (or is private or gated: log in with `hf auth login`); "
                        "check the name, or use data: sample or a local folder of train/test files") from None
    except HFValidationError:
        raise DataError(f"data {name!r} is neither 'sample', an existing folder nor a hub dataset name "
                        "(owner/name)") from None
    # offline, the whole cached snapshot comes back whatever allow_patterns said: pick the files by name
    shards = {split: sorted(f for f in folder.rglob("*.parquet") if _hub_split(f.name) == split) for split in SPLITS}
    if not any(shards.values()):
        return {}
    for split, files in shards.items():
        folders = sorted({str(f.parent.relative_to(folder)) for f in files})
        if not files:
            raise DataError(f"hub dataset {name!r} has no {split} split among its Parquet files; "
                            "use a dataset with train and test splits, or a local folder of train/test files")
        if len(folders) > 1:  # one shard list per configuration: concatenating them would mix datasets
            raise DataError(f"hub dataset {name!r} holds several configurations ({', '.join(folders)}); save the "
                            "train and test splits of one into a local folder and give data: that folder")
    return shards


def _hub_split(file_name):
    """The split a hub Parquet file holds, by its name ('train-00000-of-00002.parquet', 'test.parquet')."""
    return next((s for s in SPLITS if file_name == f"{s}.parquet" or file_name.startswith(f"{s}-")), None)


def _frames_with_datasets(name):
    import datasets

    loaded = datasets.load_dataset(name)
    missing = [s for s in SPLITS if s not in loaded]
    if missing:
        raise DataError(f"hub dataset {name!r} has no {', '.join(missing)} split (it has {', '.join(loaded)})")
    return {split: loaded[split].to_pandas() for split in SPLITS}


UNSUPERVISED = "unsupervised"  # stanfordnlp/imdb's name for its 50,000 unlabelled reviews


def hub_unsupervised(name):
    """The texts of a hub dataset's 'unsupervised' split (helpers.data.unlabelled), through the hub cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(name, repo_type="dataset",
                                        allow_patterns=[f"*{UNSUPERVISED}{tail}" for tail in ("-*.parquet", ".parquet")]))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HFValidationError) as error:
        raise DataError(f"unlabelled {name!r}: not a file, and the hub dataset cannot be had ({type(error).__name__}); "
                        "give 'sample', a Parquet/CSV file with a text column, or a hub dataset you can download "
                        "(offline: one already in the cache)") from None
    files = sorted(f for f in folder.rglob("*.parquet")
                   if f.name == f"{UNSUPERVISED}.parquet" or f.name.startswith(f"{UNSUPERVISED}-"))
    if not files:
        raise DataError(f"unlabelled {name!r}: the hub dataset has no '{UNSUPERVISED}' split among its Parquet files; "
                        "give 'sample' or a Parquet/CSV file with a text column")
    return pd.concat([pd.read_parquet(f, columns=["text"]) for f in files], ignore_index=True)["text"]
