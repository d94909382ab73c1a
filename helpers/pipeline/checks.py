"""The checks every run starts with, before any file is written or model loaded, and `open_run`, which runs them:
cheap reads (file headers, model configurations), so a misspelt path or a `max_length` too long for the model fails
in seconds, not after an hour; the data's row-by-row checks follow in the data stage, also before any model.
"""
from pathlib import Path

from helpers.core import int8, models, precision
from helpers.core.errors import ConfigError
from helpers.core.files import read_json, write_json
from helpers.data import extra_sets, imdb, unlabelled
from helpers.runs import layout
from helpers.runs.config import resolve_params
from helpers.runs.run_folder import Run, clear_run, default_run_dir, environment, refuse_mismatch, refuse_old_layout
from helpers.tokens import tokens


def check_inputs(params):
    imdb.check_source(params.data, {"train": params.n_train, "test": params.n_test})
    extra_sets.extra_test_files(params.extra_test)
    models.check_classifier(params.model, "model")
    models.check_classifier(params.student_model, "student_model")
    models.check_head(params.model, params.head)
    if params.n_unlabelled != 0:
        unlabelled.check_unlabelled(params.unlabelled)
    tokens.check_max_length(params.model, params.max_length)
    precision.choose_precision(params.precision)  # e.g. fp16 asked for on a machine without a GPU
    int8.quantization_engine()  # the distill stage's int8 student needs one
    check_tracker(params.tracker)


def check_tracker(name):
    """Refuse an experiment tracker whose package is not installed (Accelerate would drop it with a log line)."""
    import accelerate.utils

    if name != "none" and not getattr(accelerate.utils, f"is_{name}_available")():
        raise ConfigError(f"tracker {name!r} needs its package: pip install {name.replace('_', '-')}, "
                          "or choose tracker 'none'")


def open_run(profile, run_dir="", overrides=None, overwrite=False, writer=True):
    """Validate the parameters and inputs, then open (or create) their run folder; `overwrite` empties it, but only
    once every check has passed. Every process of a launch checks (so all stop alike); only the `writer` writes."""
    params = resolve_params(profile, overrides)
    check_inputs(params)
    run_dir = Path(run_dir) if run_dir else default_run_dir(profile, overrides)
    params_file = run_dir / layout.PARAMS_FILE
    if overwrite and writer:
        clear_run(run_dir)
    elif not overwrite:
        refuse_old_layout(run_dir)
        if params_file.exists():
            refuse_mismatch(run_dir, read_json(params_file), profile, params)
    if writer and not params_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(params_file, {"profile": profile, "params": params.to_dict()})
        write_json(run_dir / layout.ENVIRONMENT_FILE, environment())
    return Run(run_dir, profile, params)
