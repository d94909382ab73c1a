"""02's views: one review as the model reads it and where the cut falls, by the tokenize stage's own code."""
import pandas as pd

from helpers.tokens import tokens, truncation


def short_and_long(frame):
    """The shortest and the longest review (in characters) of a split: one that fits, one that gets cut."""
    lengths = frame["text"].str.len()
    return frame.loc[lengths.idxmin(), "text"], frame.loc[lengths.idxmax(), "text"]


def word_pieces(tokenizer, text, max_length, head_share=1.0):
    """One review as the tokenize stage cuts it: each word piece, its id and its attention mask (all 1), in order."""
    ids = truncation.truncate(tokens.full_ids(tokenizer, [text])[0], max_length, head_share)
    return pd.DataFrame({"piece": tokenizer.convert_ids_to_tokens(ids), "id": ids, "mask": [1] * len(ids)},
                        index=pd.RangeIndex(len(ids), name="position"))


def cut_counts(tokenizer, text, max_length, head_share=1.0):
    """How `truncation.truncate` cuts one review: pieces in all, kept from its head and its tail, cut."""
    length = len(tokens.full_ids(tokenizer, [text])[0])
    start, stop = truncation.cut_span(length, max_length, head_share)
    return pd.Series({"pieces in the review": length, "max_length": max_length, "truncation_head": head_share,
                      "kept from the head ([CLS] included)": start,
                      "kept from the tail ([SEP] included)": length - stop,
                      "cut, never read": stop - start}, name="pieces", dtype=object)


def around_cut(tokenizer, text, max_length, head_share=1.0, n=4):
    """The `n` pieces on each side of both edges of the cut, by position in the whole review; empty if it fits."""
    ids = tokens.full_ids(tokenizer, [text])[0]
    start, stop = truncation.cut_span(len(ids), max_length, head_share)
    if start == stop:
        return pd.DataFrame(columns=["piece", "read"], index=pd.Index([], name="position"))
    near = sorted({i for edge in (start, stop) for i in range(edge - n, edge + n) if 0 <= i < len(ids)})
    read = ["yes (head)" if i < start else "yes (tail)" if i >= stop else "no: cut" for i in near]
    return pd.DataFrame({"piece": tokenizer.convert_ids_to_tokens([ids[i] for i in near]), "read": read},
                        index=pd.Index(near, name="position"))


def truncation_text(params):
    """How this run cuts a review longer than max_length."""
    if params.truncation_head >= 1.0:
        return (f"**This run's truncation** (`truncation_head` 1.0): the model reads the first {params.max_length} "
                "word pieces of a long review and never sees the rest. Reviewers often give their verdict at the "
                "end; `truncation_head` below 1.0 would keep the end too.")
    head, _ = truncation.cut_span(params.max_length + 1, params.max_length, params.truncation_head)
    return (f"**This run's truncation** (`truncation_head` {params.truncation_head}, head+tail after Sun et al. 2019): "
            f"of a long review the model reads the first {head} and the last {params.max_length - head} word "
            f"pieces ({params.max_length} in all), where reviewers often give their verdict; the middle is dropped.")
