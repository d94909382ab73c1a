"""How a long review is cut to `max_length` tokens: plain Python, no torch, so that training (helpers.tokens.tokens),
the demo and serving an exported model (helpers.serve.onnx_backend) cut alike."""


def truncate(ids, max_length, head_share=1.0):
    """Cut a review's token ids ([CLS] first and [SEP] last, both kept) to `max_length`. head_share 1.0 keeps the
    first tokens; smaller shares keep that part from the start and the rest from the end, where reviewers often put
    their verdict (Sun et al. 2019 found 128 head + 382 tail tokens best for IMDB at 512)."""
    start, stop = cut_span(len(ids), max_length, head_share)
    return ids[:start] + ids[stop:]


def cut_span(length, max_length, head_share=1.0):
    """Where `truncate` cuts a review of `length` tokens: ids[start:stop] are dropped; empty if it fits. One place for
    the arithmetic, so that what the model is trained on and what the demo shows as cut can never disagree."""
    if length <= max_length:
        return length, length
    head = min(max_length - 1, max(1, round(head_share * max_length)))
    return head, length - (max_length - head)
