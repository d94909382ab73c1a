import os
from pathlib import Path

import pytest

from helpers.core.files import atomic_dir, atomic_write, read_json, write_json


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_write(target) as tmp:
        tmp.write_text("x")
    assert target.stat().st_mode & 0o044  # readable by group/others, unlike a bare mkstemp file


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("v2-partial")
            raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_gives_ordinary_permissions(tmp_path):
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("v1")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask


def _sizes_when_removed(monkeypatch):
    """Record, for every folder shutil.rmtree is asked to delete, the sizes its files have at that moment."""
    import shutil

    seen, real_rmtree = [], shutil.rmtree

    def recording_rmtree(path, *args, **kwargs):
        seen.append(sorted(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()))
        return real_rmtree(path, *args, **kwargs)
    monkeypatch.setattr(shutil, "rmtree", recording_rmtree)
    return seen


def test_on_a_mounted_google_drive_files_are_emptied_before_they_are_deleted(tmp_path, monkeypatch):
    """Drive's trash keeps what is deleted (and counts it): it should keep empty files, not checkpoints."""
    from helpers.core import files

    monkeypatch.setattr(files, "DRIVE_MOUNT", tmp_path / "drive")
    seen = _sizes_when_removed(monkeypatch)
    for root in (tmp_path / "drive" / "MyDrive", tmp_path / "local"):
        folder = root / "runs" / "step-00000100"
        (folder / "sub").mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w" * 1000)
        (folder / "sub" / "state.pt").write_bytes(b"s" * 10)
        files.remove_tree(folder)
        assert not folder.exists()
    assert seen == [[0, 0], [10, 1000]]  # on Drive emptied first; elsewhere deleted as they are
    files.remove_tree(tmp_path / "never-there")  # nothing to delete is fine
