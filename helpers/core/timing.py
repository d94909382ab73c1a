"""How every speed figure is timed: after one untimed call of the same shapes."""
import time


def warmed_timing(function, inputs, warm_up_inputs):
    """function(inputs) and its seconds, after one untimed call on `warm_up_inputs` (a batch of the same shapes): a
    first call pays for allocations, kernel choice and lazy set-up, which would fall on whichever model ran first."""
    function(warm_up_inputs)
    started = time.perf_counter()
    result = function(inputs)
    return result, time.perf_counter() - started
