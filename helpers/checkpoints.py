"""Training checkpoints: written whole or not at all, verified before they are used.

    <stage>/checkpoints/step-00000120/
        model.safetensors   the model's weights (safetensors: loading runs no code)
        trainer_state.pt    optimizer, scheduler, gradient scaler and random states
                            (plain tensors and numbers, read back with torch.load(weights_only=True))
        progress.json       where training stands (the loop's LoopState, whole: epoch, batches
                            done, best metric, history), the fingerprint of the run it belongs
                            to, the checkpoint format, and checksums of the two files

A checkpoint folder is written under a temporary name and renamed into place, so a kill during
a save leaves the older checkpoints as they were. Reading checks the checksums, the fingerprint
and every weight's name and shape before anything is applied, so a checkpoint that is
truncated, corrupted, or from another model or other settings is refused whole, by name.
"""
import dataclasses
import hashlib
import random
import re
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file

from helpers.io import atomic_dir, read_json, remove_tree, write_json

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
PROGRESS_FILE = "progress.json"
FORMAT = 2  # progress.json's layout: 2 holds the loop state whole under "state"; 1 (unnumbered) did not
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


def checkpoint_name(step):
    return f"step-{step:08d}"


def list_checkpoints(folder):
    """The checkpoint folders under `folder`, newest (most optimizer steps) first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found, reverse=True)]


def remove_partial_writes(folder):
    """Delete the temporary folders a kill during a save left behind; returns their names."""
    folder = Path(folder)
    leftovers = [*folder.glob(".*.tmp"), *folder.glob(".*.old")]
    for path in leftovers:
        remove_tree(path)
    return [p.name for p in leftovers]


def write_checkpoint(target, model_state, trainer_state, progress):
    """Write one checkpoint folder atomically."""
    with atomic_dir(target) as tmp:
        save_file({name: tensor.detach().contiguous().cpu() for name, tensor in model_state.items()}, tmp / MODEL_FILE)
        _save_trainer_state(trainer_state, tmp / STATE_FILE)
        checksums = {name: _sha256(tmp / name) for name in (MODEL_FILE, STATE_FILE)}
        write_json(tmp / PROGRESS_FILE, {**progress, "sha256": checksums})


def _save_trainer_state(trainer_state, path):
    # its own function so that tests can kill the process between the two files of a save
    torch.save(trainer_state, path)


def read_checkpoint(folder, fingerprint, model_state):
    """(weights, trainer state, progress) of a checkpoint, or CheckpointError saying why it cannot be used.

    `model_state` is the state dict of the model about to be restored: every weight must be
    there with the same shape and dtype.
    """
    folder = Path(folder)
    try:
        progress = read_json(folder / PROGRESS_FILE)
        for name, expected in progress["sha256"].items():
            if _sha256(folder / name) != expected:
                raise CheckpointError(f"{name} is corrupted or truncated (checksum mismatch)")
        if progress.get("format") != FORMAT:
            raise CheckpointError("written by an earlier version of imdb-distil, whose checkpoints this one cannot "
                                  "resume; delete the checkpoints folder (or rerun with --overwrite) to train afresh")
        _check_fingerprint(progress["fingerprint"], fingerprint)
        weights = load_file(folder / MODEL_FILE)
        _check_weights(weights, model_state)
        trainer_state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file can fail in many ways (bad JSON, truncated
        # safetensors, an UnpicklingError from weights_only=True refusing code): all mean "unusable"
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(f"unreadable ({type(error).__name__}: {first_line})") from None
    return weights, trainer_state, progress


def fingerprint(model, train_dataset, settings, accelerator):
    """What a checkpoint must match to be resumed: the settings that shape training, the model, the data."""
    train = train_dataset.with_format("arrow")[:]
    digest = hashlib.sha256()
    for column in ("input_ids", "labels"):
        values = train.column(column)
        digest.update((pc.list_flatten(values) if column == "input_ids" else values).to_numpy().tobytes())
    # compiling changes the kernels, not what is computed: a compiled run may resume an eager one's checkpoint;
    # nor do checkpointing and the experiment tracker change what is trained
    shaping = {k: v for k, v in dataclasses.asdict(settings).items()
               if k not in ("checkpoint_every", "keep_checkpoints", "compile", "tracker")}
    model = accelerator.unwrap_model(model)
    return {**shaping, "model": type(model).__name__, "model_parameters": sum(p.numel() for p in model.parameters()),
            "train_reviews": train.num_rows, "train_data_sha256": digest.hexdigest(),
            "processes": accelerator.num_processes}


def _check_fingerprint(stored, expected):
    changed = sorted(key for key in set(stored) | set(expected) if stored.get(key) != expected.get(key))
    if changed:
        detail = ", ".join(f"{key}: {stored.get(key)!r} -> {expected.get(key)!r}" for key in changed)
        raise CheckpointError(f"made for another run ({detail})")


def _check_weights(weights, model_state):
    missing = sorted(set(model_state) - set(weights))
    extra = sorted(set(weights) - set(model_state))
    if missing or extra:
        raise CheckpointError(f"holds another model's weights (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, tensor in weights.items():
        if tensor.shape != model_state[name].shape or tensor.dtype != model_state[name].dtype:
            raise CheckpointError(f"weight {name} is {tuple(tensor.shape)} {tensor.dtype}, "
                                  f"the model has {tuple(model_state[name].shape)} {model_state[name].dtype}")


def prune(folder, keep, also_keep=None):
    """Delete all but the `keep` newest checkpoints and the one named `also_keep` (the best)."""
    for path in list_checkpoints(folder)[keep:]:
        if path.name != also_keep:
            remove_tree(path)


def capture_rng():
    """The random states of Python, NumPy and torch (CPU and every GPU), as plain data."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return {
        "python": [version, list(python_state), python_gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state):
    version, python_state, python_gauss = state["python"]
    random.setstate((version, tuple(python_state), python_gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _restore_state(fresh_state, stored):
    """The loop state saved in a checkpoint, as an instance of fresh_state's dataclass."""
    if set(stored) != {f.name for f in dataclasses.fields(fresh_state)}:
        raise CheckpointError(f"its loop state has the fields {sorted(stored)}, which this version does not use")
    return dataclasses.replace(fresh_state, **stored)


class Checkpointer:
    """Saves and restores the whole state of one training loop in `folder`.

    `state` is the loop's LoopState (a dataclass: epoch, batches done, optimizer steps, best
    accuracy, history), saved and restored whole; the model, optimizer, scheduler, gradient scaler
    and random states travel with it. Only the main process writes; every process restores.
    """

    def __init__(self, folder, fingerprint, accelerator, model, optimizer, scheduler, sampler, keep):
        self.folder, self.fingerprint, self.keep = Path(folder), fingerprint, keep
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.sampler = sampler  # an EpochSampler: its current epoch's order is saved and restored

    def save(self, state, best=False):
        self.accelerator.wait_for_everyone()
        # every process has random states of its own (dropout, its CUDA device): all are saved
        rng_by_process = gather_object([capture_rng()])
        name = checkpoint_name(state.step)
        if best:
            state.best_checkpoint = name
        if not self.accelerator.is_main_process:
            return
        scaler = self.accelerator.scaler
        trainer_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_by_process,
                         "order": torch.tensor(self.sampler.order(state.epoch))}
        started = time.perf_counter()
        write_checkpoint(self.folder / name, self.accelerator.unwrap_model(self.model).state_dict(), trainer_state,
                         {"format": FORMAT, "state": dataclasses.asdict(state), "fingerprint": self.fingerprint})
        prune(self.folder, self.keep, also_keep=state.best_checkpoint)
        self.accelerator.print(f"checkpoint {name} saved in {time.perf_counter() - started:.1f} s")

    def resume(self, fresh_state):
        """Restore the newest usable checkpoint and return its loop state (of fresh_state's class);
        `fresh_state` when there is none."""
        say = self.accelerator.print
        leftovers = []
        if self.accelerator.is_main_process:  # the stage folder too: a kill while saving the best model
            leftovers = remove_partial_writes(self.folder) + remove_partial_writes(self.folder.parent)
        if leftovers:
            say(f"removed {len(leftovers)} unfinished write(s) in {self.folder.parent} (a kill during a save)")
        model = self.accelerator.unwrap_model(self.model)
        found = list_checkpoints(self.folder)
        for path in found:
            try:
                weights, trainer_state, progress = read_checkpoint(path, self.fingerprint, model.state_dict())
                state = _restore_state(fresh_state, progress["state"])
                self.sampler.resume_order(state.epoch, trainer_state["order"].tolist())
            except CheckpointError as error:
                say(f"checkpoint {path} cannot be used: {error}; trying the next older one")
                continue
            model.load_state_dict(weights)
            self.optimizer.load_state_dict(trainer_state["optimizer"])
            self.scheduler.load_state_dict(trainer_state["scheduler"])
            if self.accelerator.scaler is not None and trainer_state["scaler"] is not None:
                self.accelerator.scaler.load_state_dict(trainer_state["scaler"])
            # one state per process; the fingerprint already refused a checkpoint of another process count
            restore_rng(trainer_state["rng"][self.accelerator.process_index])
            say(f"resuming from checkpoint {path.name}: epoch {state.epoch}, {state.batches_done} batch(es) "
                f"of it already trained and skipped, {state.step} optimizer step(s) done")
            return state
        if found:
            say(f"no usable checkpoint in {self.folder}; training from the start")
        return fresh_state
