"""What each notebook's set-up cell does: find or start its run, then run what that run still lacks.

    run = notebook.open_stage("train", profile=profile, run_dir=run_dir, overrides=overrides, n_train=n_train, ...)

01 starts a run from a profile, the named parameters (`n_train`, `epochs`, ...) and `overrides`. 02-05 with an empty
`profile` continue a run: `run_dir`, or the one a notebook last opened (`LAST_RUN` in the runs root; on Colab, on
Drive), with its params.json. The stages a run folder lacks (on Colab each notebook has its own machine) run first."""
import json
from pathlib import Path

from helpers.core.errors import ConfigError
from helpers.core.files import project_path, read_json
from helpers.pipeline import colab, stages
from helpers.pipeline.checks import open_run
from helpers.runs import layout
from helpers.runs.config import make_params
from helpers.runs.run_folder import LAST_RUN, default_run_dir, last_run, profile_overrides, remember_last_run

DEFAULT_PROFILE = "quick"  # what a notebook with nothing to continue starts, outside Colab
NOT_GIVEN = ...  # a named parameter left so keeps the profile's value (None already means "all reviews")
# the parameters people change most, each a variable of every notebook's parameters cell (papermill -p NAME VALUE)
NAMED = ("n_train", "n_test", "epochs", "batch_size", "lr", "max_length", "precision", "seed")
GPU_STAGES = ("train", "evaluate", "distill")  # where model work starts: the no-GPU warning belongs there


def open_stage(stage, profile="", run_dir="", overrides=None, fresh=False, drive=True, **named):
    """The Run this notebook works on, with every stage before `stage` done."""
    overrides = {**parse_overrides(overrides), **given(named)}
    root = colab.runs_root(drive)
    if run_dir:
        run_dir = project_path(run_dir)  # the kernel runs in notebooks/: relative paths start at the project root
        colab.mount_if_on_drive(run_dir)
    elif not profile:
        run_dir = last_run(root) or ""
        if run_dir:
            print(f"continuing the run the last notebook opened: {run_dir}")
    profile, overrides = _continued(profile, run_dir, overrides, root)
    run = open_run(profile, run_dir or default_run_dir(profile, overrides, root), overrides, overwrite=fresh)
    remember_last_run(root, run.dir)
    print(f"run folder: {run.dir} (profile {profile!r}" + (f", overrides {overrides})" if overrides else ")"))
    if colab.on_colab() and set(GPU_STAGES) & {stage, *stages.stages_to_run_before(run, stage)}:
        colab.check_device(profile, run.params)
    stages.run_missing_before(run, stage)
    return run


def given(named):
    """The named parameters the cell set, validated by name; NOT_GIVEN ones keep the profile's value."""
    unknown = sorted(set(named) - set(NAMED))
    if unknown:
        raise ConfigError(f"open_stage: unknown named parameter(s) {unknown}; named ones are {', '.join(NAMED)}, "
                          "every other parameter goes into overrides")
    return {name: value for name, value in named.items() if value is not NOT_GIVEN}


def parse_overrides(overrides):
    """`overrides` as a dict: a mapping (the cell, papermill -y/-f) or a JSON object string (papermill -p)."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as error:
            raise ConfigError(f"overrides {overrides!r} is not valid JSON ({error.msg} at character {error.pos}); "
                              """give a JSON object, e.g. -p overrides '{"n_train": 500, "epochs": 2}', """
                              "or a YAML mapping with -y 'overrides: {n_train: 500}'") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"overrides must be a mapping of parameter names to values, got {overrides!r}; "
                          """e.g. {"n_train": 500, "epochs": 2}""")
    return dict(overrides)


def _continued(profile, run_dir, overrides, root):
    """(profile, overrides): as given, or, with no profile, those of the run in `run_dir` updated by `overrides`.
    With no run to continue: on Colab an error saying what to set; elsewhere `quick`, said aloud."""
    if profile:
        return profile, overrides
    params_file = Path(run_dir) / layout.PARAMS_FILE if run_dir else None
    if params_file is not None and params_file.exists():
        stored = read_json(params_file)
        return stored["profile"], {**profile_overrides(stored["profile"], make_params(stored["params"])), **overrides}
    where = f"run folder {run_dir} holds no run" if run_dir else f"no run was found to continue ({Path(root) / LAST_RUN})"
    if colab.on_colab():
        raise ConfigError(
            f"{where}. This notebook's profile is empty, so it continues the run an earlier notebook opened, and that "
            "run lives on Google Drive. Set profile (e.g. profile = \"subset\") to start a run here, run_dir to open "
            "a run folder, or run notebook 01 again with drive = True so that the next notebooks find its run.")
    print(f"{where}: starting profile {DEFAULT_PROFILE!r}; set profile or run_dir to choose another run")
    return DEFAULT_PROFILE, overrides
