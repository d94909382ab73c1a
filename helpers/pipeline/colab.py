"""Google Colab: the GPU check, and the run folders on Google Drive (a disconnect wipes the runtime's disk, and each
notebook runs in a runtime of its own); outside Colab a no-op.
"""
import sys
from pathlib import Path

from helpers.core import files
from helpers.core.models import MINILM, TINY
from helpers.data.imdb import IMDB_SIZES, SAMPLE_SIZES
from helpers.runs.config import resolve_params
from helpers.runs.run_folder import RUNS_ROOT

REPO = "imdb-distil/imdb-distil"  # github.com/<REPO>: the badges and install cells point here (a test checks)
DRIVE_MOUNT = files.DRIVE_MOUNT  # where google.colab.drive.mount puts Drive (tests point it at tmp_path)
DRIVE_RUNS = "MyDrive/imdb-distil/runs"  # run folders on Drive, relative to DRIVE_MOUNT
CPU_PROFILE = "quick"  # the largest profile sized for a CPU
# `quick` on a 2-core CPU, as the warning below says: docs/results.md, "The quick profile end to end" (update both)
QUICK_CPU_MINUTES = 15
CPU_MODELS = (MINILM, TINY)  # teachers small enough to fine-tune on a CPU


def on_colab():
    """True inside a Colab kernel: Colab imports `google.colab` at start-up, nothing else does."""
    return "google.colab" in sys.modules


def runs_root(drive=True):
    """The folder run folders go under: the project's runs/, or on Colab, with `drive` True, one on Google Drive,
    mounted if needed (without it nothing survives from one notebook to the next; False says what that costs)."""
    if not on_colab():
        return RUNS_ROOT
    if drive is not False and (drive_mounted() or mount_drive()):
        return DRIVE_MOUNT / DRIVE_RUNS
    reason = "drive = False" if drive is False else "Google Drive is not mounted"
    print(f"{reason}: the run folder stays on this runtime's disk ({RUNS_ROOT}). A disconnect, or opening the next "
          "notebook (a runtime of its own), loses the run: set drive = True to keep it on Google Drive.")
    return RUNS_ROOT


def check_device(profile, params):
    """Print the GPU's name, or, on the CPU, warn when the parameters ask for more than `quick` (hours, not
    minutes): switching the runtime now is far cheaper than after the data and tokenize stages."""
    import torch

    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    elif is_large_for_cpu(params):
        print(f"WARNING: no GPU, and profile {profile!r} ({params.model}, {training_reviews(params):,} training "
              f"reviews x {params.epochs + params.student_epochs} epochs, {params.max_length} tokens) is larger than "
              f"{CPU_PROFILE!r}, which already takes about {QUICK_CPU_MINUTES} minutes on a 2-core CPU: this would take hours. "
              "Switch to a GPU with Runtime > Change runtime type > GPU, then run the notebook again from the top.")
    else:
        print(f"no GPU: running on the CPU, which suits profile {profile!r}")


def is_large_for_cpu(params):
    """A teacher other than MiniLM-L6 (or the tiny test BERT), or more training work (reviews x epochs x tokens)
    than the `quick` profile: the rule follows that profile if it changes."""
    return params.model not in CPU_MODELS or training_work(params) > training_work(resolve_params(CPU_PROFILE))


def training_work(params):
    return training_reviews(params) * (params.epochs + params.student_epochs) * params.max_length


def training_reviews(params):
    """Training reviews drawn: n_train, or all the data has when n_train is none."""
    sizes = SAMPLE_SIZES if params.data == "sample" else IMDB_SIZES
    return sizes["train"] if params.n_train is None else params.n_train


def drive_mounted():
    return (DRIVE_MOUNT / "MyDrive").is_dir()


def mount_drive():
    """Mount Google Drive (Colab shows its permission dialog); False if the user refused or it failed."""
    from google.colab import drive

    try:
        drive.mount(str(DRIVE_MOUNT))
    except Exception as error:  # a refused permission dialog or a timeout: the local folder still works
        print(f"mounting Google Drive failed: {error}")
        return False
    return drive_mounted()


def mount_if_on_drive(run_dir):
    """A run_dir the user put on Drive is mounted first (a fresh runtime cannot see it before)."""
    if on_colab() and Path(run_dir).is_relative_to(DRIVE_MOUNT) and not drive_mounted() and not mount_drive():
        raise RuntimeError(f"run_dir {run_dir} is on Google Drive, which could not be mounted")
