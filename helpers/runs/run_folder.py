"""The run folder: where every stage reads its inputs and writes its outputs (file names: helpers.runs.layout).

A run folder is named after its profile, plus a digest of the overrides when there are any (`quick-1a2b3c4d`),
so runs with other parameters never share a folder; a notebook opened on an existing one checks that its
parameters match the folder's, so stages never mix. `runs/LAST_RUN` names the folder a notebook last worked on,
so the next notebook can continue it without its parameters retyped.
"""
import hashlib
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from helpers.core.errors import ConfigError
from helpers.core.files import PROJECT_ROOT, read_json, remove_tree, write_json
from helpers.runs import layout
from helpers.runs.config import CHECKPOINT_FIELDS, Params, make_params, resolve_params


@dataclass(frozen=True)
class Run:
    dir: Path
    profile: str
    params: Params

    def stage(self, name):
        """The folder of one stage, created on first use."""
        assert name in layout.STAGES, name
        path = self.dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def require(self, *parts):
        """A path another stage must have written; a clear error if it has not."""
        path = self.dir.joinpath(*parts)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: run the stage that writes {Path(*parts).parts[0]}/ first "
                                    f"(the notebooks run in order 01 to 05, or use `python -m helpers.run {self.profile}`)")
        return path


RUNS_ROOT = PROJECT_ROOT / "runs"
LAST_RUN = "LAST_RUN"  # in a runs root: the path of the run folder a notebook last opened there


def run_name(profile, overrides=None):
    """`profile`, or `profile-<8 hex>` naming the parameters that differ from it, however typed ("500" or 500);
    not the checkpoint cadence (CHECKPOINT_FIELDS), which changes no result."""
    differing = {name: value for name, value in profile_overrides(profile, resolve_params(profile, overrides)).items()
                 if name not in CHECKPOINT_FIELDS}
    if not differing:
        return profile
    canonical = json.dumps(sorted(differing.items()), default=str)
    return f"{profile}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def default_run_dir(profile, overrides=None, root=RUNS_ROOT):
    return Path(root) / run_name(profile, overrides)


def profile_overrides(profile, params):
    """The parameters in which `params` differ from `profile`'s own values."""
    base = resolve_params(profile).to_dict()
    return {name: value for name, value in params.to_dict().items() if base[name] != value}


def remember_last_run(root, run_dir):
    write_json(Path(root) / LAST_RUN, {"run_dir": str(Path(run_dir).resolve())})


def last_run(root):
    """The run folder a notebook last opened under `root`, if it still holds a run; else None."""
    pointer = Path(root) / LAST_RUN
    if not pointer.exists():
        return None
    run_dir = Path(read_json(pointer)["run_dir"])
    return run_dir if (run_dir / layout.PARAMS_FILE).exists() else None


def stages_from_first_missing(run_dir, names):
    """Of the stages `names` (in order), those from the first whose done marker the run folder lacks on."""
    missing = [name for name in names if not (Path(run_dir) / layout.DONE_MARKERS[name]).exists()]
    return names[names.index(missing[0]):] if missing else []


def read_timings(run_dir):
    """Seconds per executed notebook so far ({} before any): a run of some stages adds to the others'."""
    path = Path(run_dir) / layout.TIMINGS_FILE
    return read_json(path) if path.exists() else {}


def clear_run(run_dir):
    """Empty a run folder, refusing to touch a folder that is not one."""
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / layout.PARAMS_FILE).exists():
        raise ConfigError(f"--overwrite refused: {run_dir} is not empty and holds no params.json, so it is not a run folder")
    remove_tree(run_dir)  # missing is fine


def load_run(run_dir):
    """Open an existing run folder with the parameters it was made with."""
    refuse_old_layout(run_dir)
    stored = read_json(Path(run_dir) / layout.PARAMS_FILE)
    return Run(Path(run_dir), stored["profile"], make_params(stored["params"]))


def refuse_old_layout(run_dir):
    """Refuse a run folder made before the stages' folders took their names (tokenized/, eval/): no stage looks there."""
    if old := [name for name in layout.OLD_FOLDERS if (Path(run_dir) / name).is_dir()]:
        renamed = ", ".join(f"{name}/ is now {layout.OLD_FOLDERS[name]}/" for name in old)
        raise ConfigError(f"run folder {run_dir} was made by an older version of this project ({renamed}); "
                          "run it again into a new folder, or start this one afresh with --overwrite (a notebook: "
                          "fresh = True)")


def refuse_mismatch(run_dir, stored, profile, params):
    """Refuse to open a run folder with parameters other than its own; the checkpoint cadence may change
    (a rerun with checkpoint_minutes or keep_checkpoints changed takes the new values, params.json keeps the first)."""
    old = stored["params"]
    changed = {k: (old.get(k), v) for k, v in params.to_dict().items() if old.get(k) != v and k not in CHECKPOINT_FIELDS}
    if stored["profile"] == profile and not changed:
        return
    detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()) or "no parameter"
    raise ConfigError(f"run folder {run_dir} was made with profile {stored['profile']!r} and other parameters "
                      f"({detail}; profile {stored['profile']!r} -> {profile!r}). Choose a new run folder, or start this "
                      f"one afresh: in a notebook set fresh = True in its parameters cell; on the command line add "
                      f"--overwrite (`python -m helpers.run {profile} --run-dir {run_dir} --overwrite`).")


def environment():
    """What produced a run: versions, commit and device, for reproducing it later."""
    import torch

    versions = {}
    for package in ("torch", "transformers", "datasets", "accelerate", "numpy", "pandas", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu = f"cpu ({platform.processor() or platform.machine()})"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "git_commit": _git_commit(), "device": device, "cuda_devices": torch.cuda.device_count()}


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None


def summary_table(run):
    """The resolved parameters as a two-column table for a notebook's first output."""
    import pandas as pd

    rows = [("profile", run.profile), ("run folder", str(run.dir))] + list(run.params.to_dict().items())
    return pd.DataFrame(rows, columns=["parameter", "value"]).set_index("parameter")


def disk_usage(run_dir):
    """Megabytes each stage folder of a run takes, its checkpoints counted apart, and the total."""
    import pandas as pd

    def megabytes(folder):
        return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 1e6

    run_dir = Path(run_dir)
    rows = [(name, megabytes(run_dir / name), megabytes(run_dir / name / "checkpoints")) for name in layout.STAGES]
    rows.append(("whole run folder", megabytes(run_dir), sum(row[2] for row in rows)))
    return pd.DataFrame(rows, columns=["folder", "MB", "of which checkpoints"]).set_index("folder").round(1)
