"""The checks every run starts with, before any file is written or any model loaded.

They read only what is cheap to read (file headers, model configurations), so a misspelt path,
a model that cannot classify text or a `max_length` too long for the model fails within
seconds, not after the data stage or an hour of training. The full row-by-row checks of the
data follow in the data stage, which also comes before any model.
"""
from helpers import data, extra_sets, models, precision, tokens, unlabelled
from helpers.config import ConfigError


def check_inputs(params):
    data.check_source(params.data, {"train": params.n_train, "test": params.n_test})
    extra_sets.extra_test_files(params.extra_test)
    models.check_classifier(params.model, "model")
    models.check_classifier(params.student_model, "student_model")
    models.check_head(params.model, params.head)
    if params.n_unlabelled != 0:
        unlabelled.check_unlabelled(params.unlabelled)
    tokens.check_max_length(params.model, params.max_length)
    precision.choose_precision(params.precision)  # e.g. fp16 asked for on a machine without a GPU
    precision.quantization_engine()  # the distill stage's int8 student needs one
    check_tracker(params.tracker)


def check_tracker(name):
    """Refuse an experiment tracker whose package is not installed (Accelerate would drop it with a log line)."""
    import accelerate.utils

    if name != "none" and not getattr(accelerate.utils, f"is_{name}_available")():
        raise ConfigError(f"tracker {name!r} needs its package: pip install {name.replace('_', '-')}, "
                          "or choose tracker 'none'")
