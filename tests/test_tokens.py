import numpy as np
import pytest

from helpers.core.errors import ConfigError
from helpers.tokens import tokens


@pytest.fixture(scope="module")
def tokenized(sample, tiny_tokenizer):
    splits = {"train": sample["train"].head(40), "test": sample["test"].head(20)}
    return tokens.tokenize_splits(splits, tiny_tokenizer, max_length=200)


def test_reviews_are_truncated_but_not_padded(tokenized):
    lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
    assert max(lengths) == 200
    assert min(lengths) < 200  # no padding up front: short reviews stay short
    assert all(len(m) == len(i) for m, i in zip(tokenized["train"]["attention_mask"], tokenized["train"]["input_ids"]))
    assert "token_type_ids" not in tokenized["train"].column_names  # DistilBERT takes none


def test_labels_and_untruncated_lengths_are_kept(tokenized, sample, tiny_tokenizer):
    assert tokenized["test"]["labels"] == sample["test"]["label"].head(20).tolist()
    full = [len(tiny_tokenizer(t)["input_ids"]) for t in sample["test"]["text"].head(20)]
    assert tokenized["test"]["full_length"] == full


def test_length_stats_report_the_truncated_share(tokenized):
    stats = tokens.length_stats(tokenized, 200)
    expected = float(np.mean(np.asarray(tokenized["train"]["full_length"]) > 200))
    assert stats.loc["train", "truncated_share"] == pytest.approx(expected, abs=1e-3)
    assert stats.loc["test", "reviews"] == 20


def test_max_length_above_the_model_limit_is_refused():
    with pytest.raises(ConfigError, match="max_length 1024 is above the 512 tokens"):
        tokens.check_max_length("tiny-random-bert", 1024)
    assert tokens.check_max_length("tiny-random-bert", 512) == 512


def test_tokenized_splits_and_tokenizer_round_trip(tmp_path, tokenized, tiny_tokenizer):
    tokens.save_tokenized(tokenized, tiny_tokenizer, tmp_path)
    loaded = tokens.load_tokenized(tmp_path)
    assert loaded["train"]["input_ids"] == tokenized["train"]["input_ids"]
    reloaded = tokens.load_saved_tokenizer(tmp_path)
    assert reloaded("a fine film")["input_ids"] == tiny_tokenizer("a fine film")["input_ids"]


def test_truncation_keeps_the_start_and_end_tokens():
    ids = [101] + list(range(1, 21)) + [102]  # [CLS] 1..20 [SEP]
    assert tokens.truncate(ids, 8) == [101, 1, 2, 3, 4, 5, 6, 102]  # plain: the first tokens
    assert tokens.truncate(ids, 8, head_share=0.25) == [101, 1, 16, 17, 18, 19, 20, 102]  # head 2, tail 6
    assert tokens.truncate(ids, 8, head_share=0.0) == [101, 15, 16, 17, 18, 19, 20, 102]  # [CLS] is always kept
    assert tokens.truncate(ids[:5], 8, head_share=0.25) == ids[:5]  # short reviews are untouched
    assert all(len(tokens.truncate(ids, n, s)) == n for n in (3, 8, 21) for s in (0.0, 0.3, 1.0))


def test_head_and_tail_truncation_keeps_the_verdict(tiny_tokenizer):
    import pandas as pd

    text = "the plot " * 200 + "verdict: excellent"
    frame = pd.DataFrame({"text": [text], "label": [1]})
    plain = tokens.tokenize_splits({"x": frame}, tiny_tokenizer, 32)["x"]["input_ids"][0]
    head_tail = tokens.tokenize_splits({"x": frame}, tiny_tokenizer, 32, head_share=0.25)["x"]["input_ids"][0]
    assert len(plain) == len(head_tail) == 32
    assert "excellent" not in tiny_tokenizer.decode(plain) and "excellent" in tiny_tokenizer.decode(head_tail)


def test_plain_truncation_matches_the_tokenizers_own(sample, tiny_tokenizer):
    texts = sample["train"]["text"].head(10).tolist()
    ours = tokens.tokenize_splits({"x": sample["train"].head(10)}, tiny_tokenizer, 50)["x"]["input_ids"]
    theirs = tiny_tokenizer(texts, truncation=True, max_length=50)["input_ids"]
    assert ours == theirs
