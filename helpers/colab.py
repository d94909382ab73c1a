"""Google Colab set-up, called by every notebook right after its parameters; outside Colab a no-op.

On Colab a notebook should (1) say which GPU it got, or warn before a large profile crawls on
the CPU, and (2) keep the run folder on Google Drive, because a disconnect wipes the runtime's
disk and with it every checkpoint. The profile is only known after the `parameters` cell (and
papermill's injected one), so this runs in the notebook's open cell, not in the install cell.

Each notebook runs in a runtime of its own, so each mounts Drive again. A fresh runtime cannot
see Drive before it is mounted, so there it asks (one keypress); where Drive is already mounted
and already holds the run, it resumes there without asking.
"""
import sys
from pathlib import Path

from helpers.config import resolve_params
from helpers.data import SAMPLE_DIR, parquet_rows
from helpers.models import MINILM, TINY
from helpers.runs import default_run_dir

REPO = "imdb-distil/imdb-distil"  # github.com/<REPO>: the badges and install cells point here (a test checks)
DRIVE_MOUNT = Path("/content/drive")  # where google.colab.drive.mount puts Drive (tests point it at tmp_path)
DRIVE_RUNS = "MyDrive/imdb-distil/runs"  # run folders on Drive, relative to DRIVE_MOUNT
CPU_PROFILE = "quick"  # the largest profile sized for a CPU
# what the warning below tells users `quick` takes on a 2-core CPU; measured: docs/results.md, "The quick profile
# end to end" (update both together)
QUICK_CPU_MINUTES = 15
CPU_MODELS = (MINILM, TINY)  # teachers small enough to fine-tune on a CPU
IMDB_TRAIN_REVIEWS = 25_000  # what n_train = none means for the full dataset


def on_colab():
    """True inside a Colab kernel: Colab imports `google.colab` at start-up, nothing else does."""
    return "google.colab" in sys.modules


def setup(profile, run_dir, overrides, ask=input):
    """The run folder to use: `run_dir` unchanged outside Colab; on Colab, after a GPU check, maybe on Drive.

    `ask` is how the Drive question is put (a test passes its own). A kernel without a keyboard
    (EOFError, or ipykernel's StdinNotImplementedError under papermill) keeps the local folder.
    """
    if not on_colab():
        return run_dir
    params = resolve_params(profile, overrides)
    check_device(profile, params)
    return offer_drive(profile, run_dir, ask)


def check_device(profile, params):
    """Print the GPU's name, or, on the CPU, warn when the parameters ask for more than `quick`.

    A CPU runtime trains `quick` in minutes but `subset` or `full` (bert-base) in hours, and
    it is far cheaper to switch the runtime now than after the data and tokenize stages.
    """
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
    """A teacher other than MiniLM-L6 (or the tiny test BERT), or more training work than `quick`.

    Work is reviews x epochs (teacher plus student) x tokens per review, compared with what the
    `quick` profile does, so the rule follows that profile if it changes.
    """
    return params.model not in CPU_MODELS or training_work(params) > training_work(resolve_params(CPU_PROFILE))


def training_work(params):
    return training_reviews(params) * (params.epochs + params.student_epochs) * params.max_length


def training_reviews(params):
    """Training reviews drawn: n_train, or all the data has when n_train is none."""
    if params.n_train is not None:
        return params.n_train
    if params.data == "sample":
        return parquet_rows(SAMPLE_DIR / "train.parquet")
    return IMDB_TRAIN_REVIEWS


def drive_run_dir(profile, run_dir):
    """The Drive folder for this run: the local folder's name (runs/<profile> by default) under DRIVE_RUNS."""
    name = Path(run_dir).name if run_dir else profile
    return DRIVE_MOUNT / DRIVE_RUNS / name


def offer_drive(profile, run_dir, ask=input):
    """Offer to keep the run folder on Drive; return the folder to use.

    The question defaults to yes ([Y/n]): on Colab the costly mistake is a run that a
    disconnect wipes out, and Google's own permission dialog still follows before anything on
    Drive is touched. Where Drive is already mounted and holds this run, it resumes there
    without asking; a run_dir already on Drive is used as it is (mounting Drive if needed).
    """
    if run_dir and Path(run_dir).is_relative_to(DRIVE_MOUNT):
        if not drive_mounted() and not mount_drive():
            raise RuntimeError(f"run_dir {run_dir} is on Google Drive, which could not be mounted")
        return run_dir
    target = drive_run_dir(profile, run_dir)
    if drive_mounted() and (target / "params.json").exists():
        print(f"run folder: {target} (on Google Drive, holds this run already: resuming there)")
        return str(target)
    local = run_dir or default_run_dir(profile)
    try:
        answer = ask(f"Keep the run folder on Google Drive ({target}), so that a disconnect loses nothing? [Y/n] ")
    except (EOFError, NotImplementedError):
        print(f"no one to answer (not an interactive kernel): keeping the run folder local, {local}")
        return run_dir
    if answer.strip().lower() not in ("", "y", "yes"):
        print(f"keeping the run folder local ({local}): a disconnect loses it; run this cell again to choose Drive")
        return run_dir
    if not mount_drive():
        print(f"Google Drive not mounted: keeping the run folder local, {local}")
        return run_dir
    resuming = (target / "params.json").exists()
    print(f"run folder: {target} (on Google Drive{', holds this run already: resuming there' if resuming else ''})")
    return str(target)


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
