"""Crash-safe file writes: written beside the target under a temporary name, then renamed into place (atomic within
one filesystem), so a reader never sees a half-written file or folder and a kill mid-write leaves the old one intact."""
import errno
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

# Google Drive as Colab mounts it (helpers.pipeline.colab; IMDB_DISTIL_DRIVE moves it for the test that walks the
# notebooks as Colab runs them): a file deleted there goes to Drive's trash and keeps counting against the quota
DRIVE_MOUNT = Path(os.environ.get("IMDB_DISTIL_DRIVE", "/content/drive"))
# what a write into a full disk raises: no space left, or (a quota such as Google Drive's) quota exceeded
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_path(value):
    """A path parameter as a notebook reads it: relative paths from the project root, since notebooks run in
    notebooks/ (helpers.run makes paths typed on its command line absolute first)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


class DiskFullError(RuntimeError):
    """A write found its disk (or its quota) full; the message says where, how much it needed and what to delete."""


def remove_tree(path):
    """Delete a folder and everything in it; missing is fine. On Google Drive each file is emptied first, so
    rotated checkpoints leave empty files in Drive's trash, not gigabytes; but not a file with another name
    elsewhere (a hard link: the best model shares its weights with a checkpoint), which would empty that too."""
    path = Path(path)
    if not path.exists():
        return
    if path.resolve().is_relative_to(DRIVE_MOUNT):
        for file in path.rglob("*"):
            if file.is_file() and not file.is_symlink() and file.stat().st_nlink == 1:
                os.truncate(file, 0)
    shutil.rmtree(path, ignore_errors=True)


def _beside(target):
    """(`target` as a Path, its folder made; a name beside it that no other writer uses: one write's temporary)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target, target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_write(target):
    """Yield a temporary path beside `target`; on success rename it to `target`. The file is created with the
    usual mode (0o666 less the umask, applied by the system), and O_EXCL makes sure no other write holds its name."""
    target, tmp = _beside(target)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(target):
    """Yield a temporary folder beside `target` (made with the usual mode); on success it replaces `target` whole."""
    target, tmp = _beside(target)
    tmp.mkdir()
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            os.replace(target, old)  # folders cannot be renamed over, so move the old one aside
        os.replace(tmp, target)
        remove_tree(old)
    finally:
        remove_tree(tmp)


def write_json(target, obj):
    with atomic_write(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_frame(target, frame, **kwargs):
    """A pandas frame as Parquet or CSV, by the target's suffix."""
    with atomic_write(target) as tmp:
        write = frame.to_parquet if Path(target).suffix == ".parquet" else frame.to_csv
        write(tmp, **kwargs)


def read_json(path):
    return json.loads(Path(path).read_text())


def dir_size_mb(path, pattern="*.safetensors"):
    """Size on disk of the files matching `pattern` under `path`, in megabytes."""
    return sum(f.stat().st_size for f in Path(path).glob(pattern)) / 1e6


@contextmanager
def stop_if_disk_full(what, target, needed_bytes, advice):
    """Run a write; if the disk (or its quota) is full, raise DiskFullError saying where, how much the write
    needed and `advice` (what to delete; a string, or a function returning one), not the bare OSError. Use it
    around an atomic write, whose temporary files are gone by then."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        advice = advice() if callable(advice) else advice  # worked out only when needed
        folder = next(p for p in Path(target).absolute().parents if p.exists())
        free, needed = format_bytes(shutil.disk_usage(folder).free), format_bytes(needed_bytes)
        raise DiskFullError(f"the disk is full: {what} into {folder} needed about {needed}, and that disk has {free} "
                            f"free (a full Google Drive quota counts as a full disk). Nothing written before was "
                            f"touched. Free at least {needed}: {advice}; then run the same command again.") from error


def format_bytes(size):
    """A byte count as people read it: 1.3 GB, 240 MB, 12 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.{1 if size < 10 * scale else 0}f} {unit}"
    return f"{size} bytes"
