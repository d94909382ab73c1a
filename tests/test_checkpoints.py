"""Checkpoints: what is kept, what is refused, and resuming in-process (the SIGKILL tests are in test_resume)."""
import dataclasses
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import batching, checkpoints, models, training
from helpers.config import resolve_params
from helpers.training import TrainSettings


def _settings(**changes):
    values = {"epochs": 2, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0, "checkpoint_every": 5,
              "keep_checkpoints": 2, **changes}
    return TrainSettings.from_params(resolve_params("smoke", values))


def _train(out_dir, synthetic, tokenizer, **changes):
    model = models.load_teacher(models.TINY, tokenizer, seed=0)
    history = training.train(model, synthetic, tokenizer, _settings(**changes), out_dir)
    return model, history


def _weights(folder):
    return (folder / "model" / "model.safetensors").read_bytes()


def _names(out_dir):
    return [p.name for p in checkpoints.list_checkpoints(out_dir / "checkpoints")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic, tiny_tokenizer):
    """One uninterrupted run: 2 epochs of 12 steps, checkpoints every 5 steps, the last 2 and the best kept."""
    out_dir = tmp_path_factory.mktemp("finished")
    _, history = _train(out_dir, synthetic, tiny_tokenizer)
    return out_dir, history


def test_checkpoints_hold_everything_needed_to_resume(finished):
    out_dir, history = finished
    newest = checkpoints.list_checkpoints(out_dir / "checkpoints")[0]
    assert newest.name == "step-00000024"  # the epoch-end checkpoint after the last of 24 steps
    assert sorted(p.name for p in newest.iterdir()) == ["model.safetensors", "progress.json", "trainer_state.pt"]
    progress = json.loads((newest / "progress.json").read_text())
    assert progress["format"] == checkpoints.FORMAT
    loop = progress["state"]  # training.LoopState, whole
    assert set(loop) == {f.name for f in dataclasses.fields(training.LoopState)}
    assert (loop["epoch"], loop["batches_done"], loop["step"]) == (3, 0, 24)
    assert loop["history"] == json.loads(json.dumps(history))
    assert loop["best_accuracy"] == max(e["accuracy"] for e in history["epochs"])
    state = torch.load(newest / "trainer_state.pt", weights_only=True)
    assert set(state) == {"optimizer", "scheduler", "scaler", "rng", "order"}
    assert sorted(state["order"].tolist()) == list(range(192))  # the next epoch's order, stored
    assert len(state["rng"]) == 1  # one record per process
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert state["optimizer"]["state"]  # AdamW moments


def test_the_newest_k_and_the_best_are_kept(finished):
    out_dir, history = finished
    names = _names(out_dir)
    best_epoch = max(history["epochs"], key=lambda e: e["accuracy"])["epoch"]
    best = f"step-{12 * best_epoch:08d}"
    assert names[:2] == ["step-00000024", "step-00000020"]  # 5, 10, 15, 20 in-epoch; 12 and 24 at epoch ends
    assert set(names) == {"step-00000024", "step-00000020", best}


def test_running_again_resumes_and_trains_nothing_more(tmp_path, finished, synthetic, tiny_tokenizer, capsys):
    out_dir, history = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")
    model, again = _train(copy, synthetic, tiny_tokenizer)
    assert "resuming from checkpoint step-00000024: epoch 3" in capsys.readouterr().out
    assert again == json.loads(json.dumps(history))
    assert _weights(copy) == _weights(out_dir)


def test_a_run_broken_off_mid_epoch_resumes_to_the_same_weights(tmp_path, finished, synthetic, tiny_tokenizer,
                                                                monkeypatch, capsys):
    out_dir, history = finished
    calls = {"n": 0}
    real_forward = training.forward

    def failing_forward(model, batch):
        calls["n"] += model.training
        if calls["n"] == 18:  # epoch 2, batch 6; the newest checkpoint is step 15
            raise KeyboardInterrupt
        return real_forward(model, batch)

    monkeypatch.setattr(training, "forward", failing_forward)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, synthetic, tiny_tokenizer)
    monkeypatch.setattr(training, "forward", real_forward)
    _, resumed = _train(tmp_path, synthetic, tiny_tokenizer)
    assert "resuming from checkpoint step-00000015: epoch 2, 3 batch(es)" in capsys.readouterr().out
    assert _weights(tmp_path) == _weights(out_dir)
    assert resumed == json.loads(json.dumps(history))


def _broken_copies(tmp_path, finished, damage):
    out_dir, _ = finished
    copy = tmp_path / "copy"
    os.system(f"cp -r {out_dir} {copy}")
    damage(checkpoints.list_checkpoints(copy / "checkpoints")[0])
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
    assert f"checkpoint {copy / 'checkpoints' / 'step-00000024'} cannot be used: {reason}" in out
    assert "resuming from checkpoint step-00000020: epoch 2, 8 batch(es)" in out
    assert _weights(copy) == _weights(finished[0])


def test_a_checkpoint_that_would_run_code_on_loading_is_refused(tmp_path, finished):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    folder = checkpoints.list_checkpoints(finished[0] / "checkpoints")[0]
    copy = tmp_path / folder.name
    os.system(f"cp -r {folder} {copy}")
    (copy / "trainer_state.pt").write_bytes(pickle.dumps({"optimizer": Payload()}, protocol=2))
    progress = json.loads((copy / "progress.json").read_text())
    progress["sha256"]["trainer_state.pt"] = checkpoints._sha256(copy / "trainer_state.pt")
    (copy / "progress.json").write_text(json.dumps(progress))
    model_state = load_file(copy / "model.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match="unreadable"):
        checkpoints.read_checkpoint(copy, progress["fingerprint"], model_state)
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
    folder = checkpoints.list_checkpoints(out_dir / "checkpoints")[0]
    other = models.load_teacher(models.TINY, tiny_tokenizer, seed=0)
    other.bert.pooler = None
    with pytest.raises(checkpoints.CheckpointError, match="another model's weights"):
        checkpoints.read_checkpoint(folder, json.loads((folder / "progress.json").read_text())["fingerprint"],
                                    other.state_dict())


def test_a_checkpoint_of_an_earlier_version_is_refused_by_name_not_misread(tmp_path, finished, synthetic,
                                                                          tiny_tokenizer, capsys):
    """Before format 2, progress.json held the loop's fields at its top level and no format number."""
    copy = _broken_copies(tmp_path, finished, lambda c: None)
    for folder in checkpoints.list_checkpoints(copy / "checkpoints"):
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

    from helpers import io

    monkeypatch.setattr(io, "DRIVE_MOUNT", tmp_path)  # this folder plays a mounted Google Drive
    removed, real_rmtree = [], shutil.rmtree

    def recording_rmtree(path, *args, **kwargs):
        removed.append((Path(path).name, sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())))
        return real_rmtree(path, *args, **kwargs)
    monkeypatch.setattr(shutil, "rmtree", recording_rmtree)
    _train(tmp_path / "run", synthetic, tiny_tokenizer, keep_checkpoints=1)
    pruned = [(name, size) for name, size in removed if name.startswith("step-")]
    assert len(pruned) >= 3 and all(size == 0 for _, size in pruned), pruned  # emptied before deletion
    assert all(size == 0 for _, size in removed), removed  # the replaced best model too
    _train(tmp_path / "run", synthetic, tiny_tokenizer, keep_checkpoints=1)  # what is kept is whole
    assert "resuming from checkpoint step-00000024: epoch 3" in capsys.readouterr().out


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
    os.system(f"cp -r {out_dir} {copy}")
    for path in checkpoints.list_checkpoints(copy / "checkpoints")[:1]:
        shutil.rmtree(path)  # the newest left is step 20: epoch 2, 8 of 12 batches done
    monkeypatch.setattr(batching, "length_grouped_order", lambda lengths, *args: list(range(len(lengths)))[::-1])
    _train(copy, synthetic, tiny_tokenizer)
    assert _weights(copy) == _weights(out_dir)


def test_random_states_round_trip():
    import random

    import numpy as np

    state = checkpoints.capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(3)
    checkpoints.restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
