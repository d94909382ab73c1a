"""How far a batch of reviews is padded: to its longest review, rounded up to a multiple of PAD_TO_MULTIPLE. The
torch loaders (helpers.train.batching), the ONNX backend (helpers.serve.onnx_backend, no torch) and the cost
estimates all pad so; pure Python, so any of them can use it."""

PAD_TO_MULTIPLE = 8  # tensor-core and vectorised kernels run fastest on multiples of 8


def padded_length(longest):
    """`longest` tokens (an int, a float or a NumPy array of them) rounded up to a multiple of PAD_TO_MULTIPLE."""
    return -(-longest // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE
