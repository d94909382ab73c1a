"""How every speed figure is timed: after one untimed call of the same shapes."""
import time


def warmed_timing(function, inputs, warm_up_inputs):
    """function(inputs) and the seconds it took, after one untimed call on `warm_up_inputs` (one batch of the
    same shapes): a first call pays for allocations, kernel choice and lazy set-up, which would otherwise fall
    on whichever model happens to be timed first."""
    function(warm_up_inputs)
    started = time.perf_counter()
    result = function(inputs)
    return result, time.perf_counter() - started
