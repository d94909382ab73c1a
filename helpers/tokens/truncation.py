"""How a long review is cut to `max_length` tokens: plain Python, no torch, so that training
(helpers.tokens.tokens), the demo and serving an exported model (helpers.serve.onnx_backend) cut alike."""


def truncate(ids, max_length, head_share=1.0):
    """Cut a long review's token ids to `max_length`, keeping its start and, optionally, its end.

    `ids` begins with the start token ([CLS]) and ends with the end token ([SEP]); both are kept.
    head_share 1.0 keeps the first tokens (the usual truncation); smaller shares keep that part
    of `max_length` from the start and the rest from the end, where reviewers often put their
    verdict (Sun et al. 2019 found 128 head + 382 tail tokens best for IMDB at 512).
    """
    start, stop = cut_span(len(ids), max_length, head_share)
    return ids[:start] + ids[stop:]


def cut_span(length, max_length, head_share=1.0):
    """Where `truncate` cuts a review of `length` tokens: ids[start:stop] are dropped.

    One place for the arithmetic, so that what the model is trained on and what the demo
    (helpers.evaluate.demo) shows as cut can never disagree. A review that fits gives an empty span.
    """
    if length <= max_length:
        return length, length
    head = min(max_length - 1, max(1, round(head_share * max_length)))
    return head, length - (max_length - head)
