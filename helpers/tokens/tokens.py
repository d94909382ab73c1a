"""Stage 2: tokenize the splits, truncating to `max_length`. Padding waits for batching: the loaders pad each
batch to its longest review, which on IMDB saves much of what padding all to `max_length` up front would waste.
"""
from collections import Counter

import datasets
import numpy as np
import pandas as pd
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from helpers.core.errors import ConfigError
from helpers.core.files import atomic_dir
from helpers.core.models import TINY, TINY_CONFIG, model_source, position_limit
from helpers.tokens.truncation import truncate

TINY_VOCAB_SIZE = 2000  # word pieces of the tiny test model's tokenizer


def check_max_length(model_name, max_length):
    """Refuse a `max_length` the model has no position embeddings for, before any tokenizing."""
    limit = position_limit(model_name)
    if max_length > limit:
        raise ConfigError(f"max_length {max_length} is above the {limit} tokens model {model_name!r} can read; "
                          f"set max_length to {limit} or less")
    return limit


def full_ids(tokenizer, texts):
    """Token ids of whole reviews, [CLS] and [SEP] included: the cut is `truncate`'s, not the tokenizer's."""
    return tokenizer(texts, truncation=False, verbose=False, return_token_type_ids=False)["input_ids"]


def tokenize_splits(splits, tokenizer, max_length, head_share=1.0):
    """A DatasetDict of token ids per split, with each review's untruncated length kept for statistics."""
    def encode(batch):
        full = full_ids(tokenizer, batch["text"])
        kept = [truncate(ids, max_length, head_share) for ids in full]
        return {"input_ids": kept, "attention_mask": [[1] * len(ids) for ids in kept],
                "labels": batch["label"], "full_length": [len(ids) for ids in full]}

    return datasets.DatasetDict({name: datasets.Dataset.from_pandas(frame, preserve_index=False).map(
        encode, batched=True, remove_columns=list(frame.columns), desc=f"tokenizing {name}")
        for name, frame in splits.items()})


def length_stats(tokenized, max_length):
    """Token-length percentiles and the share of reviews cut by truncation, per split."""
    rows = []
    for name, ds in tokenized.items():
        lengths = np.asarray(ds["full_length"])
        rows.append({"split": name, "reviews": len(lengths), "mean": round(float(lengths.mean()), 1),
                     "median": int(np.median(lengths)), "p90": int(np.percentile(lengths, 90)),
                     "max": int(lengths.max()), "truncated_share": round(float((lengths > max_length).mean()), 3)})
    return pd.DataFrame(rows).set_index("split")


def save_tokenized(tokenized, tokenizer, folder):
    with atomic_dir(folder / "splits") as tmp:
        tokenized.save_to_disk(str(tmp))
    with atomic_dir(folder / "tokenizer") as tmp:
        tokenizer.save_pretrained(tmp)


def load_tokenized(folder):
    return datasets.load_from_disk(str(folder / "splits"))


def load_saved_tokenizer(folder):
    return AutoTokenizer.from_pretrained(folder / "tokenizer")


def prepare_tokenizer(params, train_texts):
    """Check max_length against the model, then load (or, for the tiny model, learn) the tokenizer."""
    check_max_length(params.model, params.max_length)
    return load_tokenizer(params.model, train_texts)


def load_tokenizer(name, train_texts=None):
    """The model's fast tokenizer; for the tiny model, one learnt from `train_texts`."""
    return _train_tiny_tokenizer(train_texts) if name == TINY else AutoTokenizer.from_pretrained(model_source(name))


def _train_tiny_tokenizer(texts):
    """A WordPiece tokenizer over the commonest words of `texts`, ties broken alphabetically (WordPieceTrainer's
    vary between calls, so two `smoke` runs would differ); every character is a piece, so no word becomes [UNK]."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts
                    for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({char for word in words for char in word})
    pieces = specials + chars + [f"##{char}" for char in chars]
    common = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    vocab = pieces + common[:max(0, TINY_VOCAB_SIZE - len(pieces))]
    core = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)}, unk_token="[UNK]"))
    core.normalizer, core.pre_tokenizer, core.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=TINY_CONFIG["max_position_embeddings"])
