"""Checkpoints: what is kept, what is refused, when they are written, a full disk, and resuming in-process
(the SIGKILL tests are in test_resume)."""
import dataclasses
import errno
import functools
import json
import math
import os
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.core import models
from helpers.core.files import DiskFullError
from helpers.runs.config import resolve_params
from helpers.train import batching, checkpoint_files, checkpoints, stepper, trainer
from helpers.train.trainer import TrainSettings


def _settings(**changes):
    values = {"epochs": 2, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0, "checkpoint_every": 5,
              "keep_checkpoints": 2, "keep_checkpoints_at_end": True, "tracker": "none", **changes}
    return TrainSettings.from_params(resolve_params("smoke", values))


def _train(out_dir, synthetic, tokenizer, **changes):
    model = models.load_teacher(models.TINY, tokenizer, seed=0)
    history = trainer.train(model, synthetic, tokenizer, _settings(**changes), out_dir)
    return model, history


def _weights(folder):
    return (folder / "model" / "model.safetensors").read_bytes()


def _names(out_dir):
    return [p.name for p in checkpoint_files.list_checkpoints(out_dir / "checkpoints")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic, tiny_tokenizer):
    """One uninterrupted run: 2 epochs of 12 steps, checkpoints every 5 steps and after epoch 1 (none after
    the last epoch); the last 2 and the best kept, and kept once the stage has finished (keep_checkpoints_at_end)."""
    out_dir = tmp_path_factory.mktemp("finished")
    _, history = _train(out_dir, synthetic, tiny_tokenizer)
    return out_dir, history


def test_checkpoints_hold_everything_needed_to_resume(finished):
    out_dir, history = finished
    newest = checkpoint_files.list_checkpoints(out_dir / "checkpoints")[0]
    assert newest.name == "step-00000020"  # the last one: none follows the last epoch
    assert sorted(p.name for p in newest.iterdir()) == ["model.safetensors", "progress.json", "trainer_state.pt"]
    progress = json.loads((newest / "progress.json").read_text())
    assert progress["format"] == checkpoint_files.FORMAT
    # the checksums were taken from memory while writing: they match the files as read back
    assert progress["sha256"] == {name: checkpoint_files._sha256(newest / name) for name in ("model.safetensors", "trainer_state.pt")}
    loop = progress["state"]  # trainer.LoopState, whole
    assert set(loop) == {f.name for f in dataclasses.fields(trainer.LoopState)}
    assert (loop["epoch"], loop["batches_done"], loop["step"]) == (2, 8, 20)
    expected = json.loads(json.dumps(history))
    assert loop["history"]["steps"] == expected["steps"][:20] and loop["history"]["epochs"] == expected["epochs"][:1]
    assert loop["best_accuracy"] == history["epochs"][0]["accuracy"]
    state = torch.load(newest / "trainer_state.pt", weights_only=True)
    assert set(state) == {"optimizer", "scheduler", "scaler", "rng", "order"}
    assert sorted(state["order"].tolist()) == list(range(192))  # the current epoch's order, stored
    assert len(state["rng"]) == 1  # one record per process
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert state["optimizer"]["state"]  # AdamW moments


def test_the_newest_k_and_the_best_are_kept(finished):
    out_dir, _ = finished
    # 5, 10, 15, 20 in-epoch, 12 after epoch 1 (the first epoch is always the best so far), none after epoch 2
    assert _names(out_dir) == ["step-00000020", "step-00000015", "step-00000012"]


def test_the_best_model_and_its_epoch_end_checkpoint_share_one_weights_file(tmp_path, synthetic, tiny_tokenizer,
                                                                            monkeypatch):
    """Written once: the checkpoint after epoch 1 links the best model's model.safetensors. The folder is
    still what transformers writes (save_pretrained, byte for byte) and loads."""
    real_scores = trainer.validation_scores
    epochs_seen = []

    def epoch_1_best(logits, labels):  # epoch 2 scores lower, so epoch 1's model stays the best
        epochs_seen.append(1)
        scores = real_scores(logits, labels)
        return {**scores, "accuracy": 1.0 if len(epochs_seen) == 1 else 0.0}

    monkeypatch.setattr(trainer, "validation_scores", epoch_1_best)
    _train(tmp_path, synthetic, tiny_tokenizer, checkpoint_every=100)
    model_file, checkpoint_file = tmp_path / "model" / "model.safetensors", tmp_path / "checkpoints" / "step-00000012" / "model.safetensors"
    assert os.path.samefile(model_file, checkpoint_file) and model_file.stat().st_nlink == 2
    best = models.load_trained(tmp_path / "model")
    models.save_classifier(best, tiny_tokenizer, tmp_path / "reference")
    written = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "reference").iterdir())
    for name in written:
        assert (tmp_path / "model" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name


def test_a_finished_stage_deletes_its_checkpoints_and_trains_afresh_when_run_again(tmp_path, finished, synthetic,
                                                                                   tiny_tokenizer, capsys):
    """The cadence and what is kept change no result: a run folder with other values of them still resumes."""
    out_dir, history = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")
    cadence = {"checkpoint_every": 0, "checkpoint_minutes": 30.0, "keep_checkpoints": 1, "keep_checkpoints_at_end": False}
    _, again = _train(copy, synthetic, tiny_tokenizer, **cadence)
    out = capsys.readouterr().out
    assert "resuming from checkpoint step-00000020: epoch 2, 8 batch(es)" in out
    assert "stage finished: its checkpoints are deleted" in out and not (copy / "checkpoints").exists()
    assert again == json.loads(json.dumps(history)) and _weights(copy) == _weights(out_dir)
    _, afresh = _train(copy, synthetic, tiny_tokenizer, **cadence)  # run again: trained from its inputs
    out = capsys.readouterr().out
    assert "resuming" not in out and len(afresh["steps"]) == 24
    assert _weights(copy) == _weights(out_dir)


def test_a_run_broken_off_mid_epoch_resumes_to_the_same_weights(tmp_path, finished, synthetic, tiny_tokenizer,
                                                                monkeypatch, capsys):
    out_dir, history = finished
    calls = {"n": 0}
    real_forward = stepper.forward

    def failing_forward(model, batch):
        calls["n"] += model.training
        if calls["n"] == 18:  # epoch 2, batch 6; the newest checkpoint is step 15
            raise KeyboardInterrupt
        return real_forward(model, batch)

    monkeypatch.setattr(stepper, "forward", failing_forward)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, synthetic, tiny_tokenizer)
    monkeypatch.setattr(stepper, "forward", real_forward)
    _, resumed = _train(tmp_path, synthetic, tiny_tokenizer)
    assert "resuming from checkpoint step-00000015: epoch 2, 3 batch(es)" in capsys.readouterr().out
    assert _weights(tmp_path) == _weights(out_dir)
    assert resumed == json.loads(json.dumps(history))


def _broken_copies(tmp_path, finished, damage):
    out_dir, _ = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")
    damage(checkpoint_files.list_checkpoints(copy / "checkpoints")[0])
    return copy


@pytest.mark.parametrize("damage, reason", [
    (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:1000]), "model.safetensors is corrupted or truncated"),
    (lambda c: (c / "progress.json").write_text("{not json"), "unreadable (JSONDecodeError"),
    (lambda c: (c / "trainer_state.pt").unlink(), "unreadable (FileNotFoundError"),
])
def test_a_damaged_checkpoint_is_named_and_the_next_older_one_used(tmp_path, finished, synthetic, tiny_tokenizer,
                                                                   capsys, damage, reason):
    copy = _broken_copies(tmp_path, finished, damage)
    _, resumed = _train(copy, synthetic, tiny_tokenizer)
    out = capsys.readouterr().out
    assert f"checkpoint {copy / 'checkpoints' / 'step-00000020'} cannot be used: {reason}" in out
    assert "resuming from checkpoint step-00000015: epoch 2, 3 batch(es)" in out
    assert _weights(copy) == _weights(finished[0])


def test_a_checkpoint_that_would_run_code_on_loading_is_refused(tmp_path, finished):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    folder = checkpoint_files.list_checkpoints(finished[0] / "checkpoints")[0]
    copy = tmp_path / folder.name
    os.system(f"cp -r {folder} {copy}")
    (copy / "trainer_state.pt").write_bytes(pickle.dumps({"optimizer": Payload()}, protocol=2))
    progress = json.loads((copy / "progress.json").read_text())
    progress["sha256"]["trainer_state.pt"] = checkpoint_files._sha256(copy / "trainer_state.pt")
    (copy / "progress.json").write_text(json.dumps(progress))
    model_state = load_file(copy / "model.safetensors")
    with pytest.raises(checkpoint_files.CheckpointError, match="unreadable"):
        checkpoint_files.read_checkpoint(copy, progress["fingerprint"], model_state)
    assert not (tmp_path / "pwned").exists()


def test_checkpoints_of_other_settings_or_another_model_are_refused(tmp_path, finished, synthetic, tiny_tokenizer, capsys):
    out_dir, _ = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")
    _, history = _train(copy, synthetic, tiny_tokenizer, lr=1e-3, epochs=1)
    out = capsys.readouterr().out
    assert "made for another run (epochs: 2 -> 1, lr: 0.005 -> 0.001)" in out
    assert "no usable checkpoint" in out and "training from the start" in out
    assert len(history["steps"]) == 12
    folder = checkpoint_files.list_checkpoints(out_dir / "checkpoints")[0]
    other = models.load_teacher(models.TINY, tiny_tokenizer, seed=0)
    other.bert.pooler = None
    with pytest.raises(checkpoint_files.CheckpointError, match="another model's weights"):
        checkpoint_files.read_checkpoint(folder, json.loads((folder / "progress.json").read_text())["fingerprint"],
                                    other.state_dict())


def test_a_checkpoint_of_an_earlier_version_is_refused_by_name_not_misread(tmp_path, finished, synthetic,
                                                                          tiny_tokenizer, capsys):
    """Before format 2, progress.json held the loop's fields at its top level and no format number."""
    copy = _broken_copies(tmp_path, finished, lambda c: None)
    for folder in checkpoint_files.list_checkpoints(copy / "checkpoints"):
        progress = json.loads((folder / "progress.json").read_text())
        old = {**progress.pop("state"), **progress}
        del old["format"]
        (folder / "progress.json").write_text(json.dumps(old))
    _, history = _train(copy, synthetic, tiny_tokenizer)
    out = capsys.readouterr().out
    assert "cannot be used: written by an earlier version of imdb-distil" in out and "training from the start" in out
    assert len(history["steps"]) == 24  # trained afresh: 2 epochs of 12 steps


def test_on_google_drive_rotation_leaves_only_empty_files_to_the_trash(tmp_path, synthetic, tiny_tokenizer,
                                                                       monkeypatch, capsys):
    import shutil

    from helpers.core import files

    monkeypatch.setattr(files, "DRIVE_MOUNT", tmp_path)  # this folder plays a mounted Google Drive
    removed, real_rmtree = [], shutil.rmtree

    def recording_rmtree(path, *args, **kwargs):  # bytes that leave the disk: a file linked elsewhere stays
        removed.append((Path(path).name, sum(f.stat().st_size for f in Path(path).rglob("*")
                                             if f.is_file() and f.stat().st_nlink == 1)))
        return real_rmtree(path, *args, **kwargs)
    monkeypatch.setattr(shutil, "rmtree", recording_rmtree)
    _train(tmp_path / "run", synthetic, tiny_tokenizer, keep_checkpoints=1, keep_checkpoints_at_end=False)
    pruned = [(name, size) for name, size in removed if name.startswith("step-")]
    assert len(pruned) >= 3 and all(size == 0 for _, size in pruned), pruned  # emptied before deletion
    assert ("checkpoints", 0) in removed  # the finished stage's checkpoints, emptied too
    assert all(size == 0 for _, size in removed), removed  # the replaced best model too
    models.load_trained(tmp_path / "run" / "model")  # a file it shares with a checkpoint was not emptied


def test_leftovers_of_a_kill_during_a_save_are_cleared(tmp_path, finished, synthetic, tiny_tokenizer, capsys):
    out_dir, _ = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")
    (copy / "checkpoints" / ".step-00000030.abc.tmp").mkdir()
    (copy / ".model.xyz.tmp").mkdir()
    _train(copy, synthetic, tiny_tokenizer)
    assert "removed 2 unfinished write(s)" in capsys.readouterr().out
    assert not list((copy / "checkpoints").glob(".*")) and not list(copy.glob(".*"))


def test_a_resumed_epoch_follows_the_stored_order(tmp_path, finished, synthetic, tiny_tokenizer, monkeypatch):
    """Even if drawing orders changed (say, a library upgrade), a half-done epoch goes on in its stored order."""
    out_dir, _ = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")  # the newest checkpoint is step 20: epoch 2, 8 of 12 batches done
    monkeypatch.setattr(batching, "length_grouped_order", lambda lengths, *args: list(range(len(lengths)))[::-1])
    _train(copy, synthetic, tiny_tokenizer)
    assert _weights(copy) == _weights(out_dir)


def test_random_states_round_trip():
    import random

    import numpy as np

    state = checkpoint_files.capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(3)
    checkpoint_files.restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# --- when checkpoints are written: checkpoint_minutes on a fake clock, at subset's real step counts ---

# T4 step times, estimated (no T4 was at hand): a training step costs about 6 x weights x tokens FLOPs (Kaplan et al.
# 2020); bert-base's 85 M encoder weights x 16 reviews x 256 tokens = 2.1 TFLOP (attention adds about 5%). At a
# quarter of the T4's fp16 tensor-core peak of 65 TFLOPS (NVIDIA's T4 datasheet) that is 0.14 s a step; DistilBERT,
# with half the layers, about half of it. (The issue's own estimate, about 2 minutes of GPU work for both, agrees.)
T4_SECONDS_PER_STEP = {"teacher": 0.14, "student": 0.07}
# subset: 900 training reviews (1,000 less 10% validation), and 900 + 4,000 unlabelled for the student; batch 16, 3 epochs
SUBSET_REVIEWS = {"teacher": 900, "student": 4900}  # 57 and 307 steps an epoch: 171 and 921 steps


class FakeClock:
    def __init__(self):
        self.seconds = 0.0

    def __call__(self):
        return self.seconds


def _free_steps(clock, seconds_per_step):
    """A Stepper that takes no compute and advances the fake clock by one step's time instead: the loop's
    batches, epochs, validation, checkpoint decisions and writes stay real."""
    class FreeStepper:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, window):
            clock.seconds += seconds_per_step
            return torch.tensor(0.5)
    return FreeStepper


def _reviews(n, seed):
    import datasets
    import numpy as np

    lengths = np.random.default_rng(seed).integers(4, 12, size=n)
    return datasets.Dataset.from_dict({"input_ids": [[2] + [7 + i % 50] * (k - 2) + [3] for i, k in enumerate(lengths)],
                                       "attention_mask": [[1] * k for k in lengths], "labels": [i % 2 for i in range(n)]})


def _saved_steps(tmp_path, tiny_tokenizer, monkeypatch, capsys, stage, seconds_per_step, **changes):
    clock = FakeClock()
    monkeypatch.setattr(trainer, "Cadence", functools.partial(checkpoints.Cadence, clock=clock))
    monkeypatch.setattr(trainer, "Stepper", _free_steps(clock, seconds_per_step))
    data = {"train": _reviews(SUBSET_REVIEWS[stage], 0), "val": _reviews(100, 1)}
    settings = _settings(epochs=3, checkpoint_every=0, keep_checkpoints=10, **changes)
    history = trainer.train(models.load_teacher(models.TINY, tiny_tokenizer, seed=0), data, tiny_tokenizer,
                             settings, tmp_path / f"{stage}-{seconds_per_step}")
    saved = [int(name) for name in re.findall(r"checkpoint step-(\d+) saved", capsys.readouterr().out)]
    return saved, len(history["steps"])


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_checkpoint_minutes_write_at_most_two_checkpoints_per_subset_stage_on_a_t4(tmp_path, tiny_tokenizer,
                                                                                  monkeypatch, capsys, stage):
    minutes = resolve_params("subset").checkpoint_minutes  # subset's own cadence: the default
    saved, steps = _saved_steps(tmp_path, tiny_tokenizer, monkeypatch, capsys, stage, T4_SECONDS_PER_STEP[stage],
                                checkpoint_minutes=minutes)
    assert steps == {"teacher": 171, "student": 921}[stage]
    assert len(saved) <= 2, saved  # at the estimated T4 speed a subset stage is shorter than the cadence: none
    # the same stage 3 minutes short of three cadences (a GPU many times slower): exactly 2, each once the
    # minutes have passed since the stage began or the last checkpoint, at whichever step that happens
    slow = (3 * minutes - 3) * 60 / steps
    saved, _ = _saved_steps(tmp_path, tiny_tokenizer, monkeypatch, capsys, stage, slow, checkpoint_minutes=minutes)
    first = math.ceil(minutes * 60 / slow - 1e-9)
    assert saved == [first, 2 * first], (saved, first)


def test_without_a_step_cadence_no_checkpoint_follows_the_last_epoch(tmp_path, tiny_tokenizer, monkeypatch, capsys):
    """A cadence shorter than an epoch: checkpoints inside epochs and at epoch ends, none after the last one."""
    saved, steps = _saved_steps(tmp_path, tiny_tokenizer, monkeypatch, capsys, "teacher", 60.0,
                                checkpoint_minutes=57.0)  # an epoch of 57 steps lasts exactly 57 minutes
    assert steps == 171 and saved == [57, 114], saved  # epoch ends 1 and 2; epoch 3 ends the stage


# --- a full disk ---

class _FullDiskFile:
    """An open file on a full disk: every write fails as the operating system's does."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def _fill_the_disk_at(monkeypatch, name, count, folder_prefix=""):
    """From the `count`-th file `name` that helpers.train.checkpoint_files opens for writing (in a folder whose name starts
    with `folder_prefix`), the disk is full."""
    opened = []

    def open_on_a_disk_that_fills(path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)
        path = Path(path)
        if path.name == name and path.parent.name.startswith(folder_prefix):
            opened.append(path)
            if len(opened) >= count:
                return _FullDiskFile(file)
        return file
    monkeypatch.setattr(checkpoint_files, "open", open_on_a_disk_that_fills, raising=False)


@pytest.mark.parametrize("name, count, folder_prefix, what, resumes_from", [
    # the second checkpoint's trainer state (inside torch.save); the first best model (at epoch 1's end)
    ("trainer_state.pt", 2, "", "writing checkpoint step-00000010", "step-00000005: epoch 1, 5 batch(es)"),
    ("model.safetensors", 1, ".model.", "saving the best model", "step-00000010: epoch 1, 10 batch(es)"),
])
def test_a_full_disk_stops_the_run_by_name_and_a_rerun_after_freeing_space_finishes(
        tmp_path, finished, synthetic, tiny_tokenizer, monkeypatch, capsys, name, count, folder_prefix, what,
        resumes_from):
    _fill_the_disk_at(monkeypatch, name, count, folder_prefix)
    with pytest.raises(DiskFullError) as error:
        _train(tmp_path, synthetic, tiny_tokenizer)
    message = str(error.value)
    assert message.startswith(f"the disk is full: {what} into {tmp_path}") and "needed about" in message
    assert "free" in message and "delete run folders" in message and "keep_checkpoints" in message
    assert "run the same command again" in message and "No space" not in message
    newest = checkpoint_files.list_checkpoints(tmp_path / "checkpoints")[0]
    assert f"the rerun resumes from checkpoint {newest.name}" in message
    assert not list(tmp_path.rglob(".*.tmp")), "the failed write left nothing behind"
    monkeypatch.undo()  # space freed
    _, history = _train(tmp_path, synthetic, tiny_tokenizer)
    assert f"resuming from checkpoint {resumes_from}" in capsys.readouterr().out
    assert _weights(tmp_path) == _weights(finished[0]) and history == json.loads(json.dumps(finished[1]))


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 64 MB (tmpfs); skipped where mounting is not allowed (not root, a container without
    the right)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_really_full_disk_stops_the_run_and_a_rerun_after_freeing_space_finishes(
        small_disk, finished, synthetic, tiny_tokenizer, capsys):
    checkpoint_bytes = sum(f.stat().st_size for f in (finished[0] / "checkpoints" / "step-00000015").iterdir())
    ballast = small_disk / "ballast"
    # leave room for the first checkpoint (step 5) and half of the second (step 10)
    with open(ballast, "wb") as file:
        file.write(b"\0" * int(shutil.disk_usage(small_disk).free - 1.5 * checkpoint_bytes))
    out_dir = small_disk / "train"
    with pytest.raises(DiskFullError, match=r"^the disk is full: writing checkpoint step-00000010 into "):
        _train(out_dir, synthetic, tiny_tokenizer)
    assert _names(out_dir) == ["step-00000005"] and not list(out_dir.rglob(".*.tmp"))
    ballast.unlink()
    _train(out_dir, synthetic, tiny_tokenizer)
    assert "resuming from checkpoint step-00000005" in capsys.readouterr().out
    assert _weights(out_dir) == _weights(finished[0])
