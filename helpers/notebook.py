"""What each notebook's set-up cell does: find or start its run, then run what that run still lacks.

    run = notebook.open_stage("train", profile, run_dir, overrides, fresh, drive)

- Parameters once: 01 starts a run from a profile and overrides. Notebooks 02-05 left with an
  empty `profile` continue a run: the `run_dir` given, or else the one a notebook last opened
  (`runs/LAST_RUN`, on Drive when run folders are there), reading its profile and overrides from
  its params.json. Where there is none (a fresh Colab runtime without Drive), they start `quick`.
- Standing alone: when the run folder lacks an earlier stage's output (each notebook on Colab
  runs on a machine of its own), the missing earlier stages run here first, and say so.
- `fresh` empties the run folder and starts it afresh with these parameters.
"""
from pathlib import Path

from helpers import colab, stages
from helpers.config import make_params, resolve_params
from helpers.io import read_json
from helpers.runs import default_run_dir, last_run, open_run, profile_overrides, remember_last_run

DEFAULT_PROFILE = "quick"


def open_stage(stage, profile="", run_dir="", overrides=None, fresh=False, drive=None):
    """The Run this notebook works on, with every stage before `stage` done."""
    root = colab.runs_root(drive)
    if run_dir:
        colab.mount_if_on_drive(run_dir)
    elif not profile:
        run_dir = last_run(root) or ""
    profile, overrides = _continued(profile, run_dir, overrides or {})
    if colab.on_colab():
        colab.check_device(profile, resolve_params(profile, overrides))
    run = open_run(profile, run_dir or default_run_dir(profile, overrides, root), overrides, overwrite=fresh)
    remember_last_run(root, run.dir)
    print(f"run folder: {run.dir} (profile {profile!r}" + (f", overrides {overrides})" if overrides else ")"))
    stages.run_missing_before(run, stage)
    return run


def _continued(profile, run_dir, overrides):
    """(profile, overrides): as given, or, with no profile, those of the run in `run_dir` updated by
    `overrides` (none there: the default profile)."""
    if profile:
        return profile, overrides
    params_file = Path(run_dir) / "params.json" if run_dir else None
    if params_file is None or not params_file.exists():
        return DEFAULT_PROFILE, overrides
    stored = read_json(params_file)
    return stored["profile"], {**profile_overrides(stored["profile"], make_params(stored["params"])), **overrides}
