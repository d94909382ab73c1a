"""Training checkpoints on disk: written whole or not at all, verified before they are used.

    <stage>/checkpoints/step-00000120/
        model.safetensors   the model's weights (safetensors: loading runs no code)
        trainer_state.pt    optimizer, scheduler, gradient scaler and random states (plain tensors and
                            numbers, read back with torch.load(weights_only=True))
        progress.json       where training stands (the loop's LoopState, whole), the fingerprint of the run
                            it belongs to, the checkpoint format, and checksums of the two files

Written under a temporary name and renamed into place (a kill during a save leaves the older ones as they were);
checksums, fingerprint and every weight's name and shape are checked before anything is applied, so a damaged or
foreign checkpoint is refused whole, by name. When the loop writes one: helpers.train.checkpoints."""
import contextlib
import dataclasses
import hashlib
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from helpers.core.errors import CheckpointError
from helpers.core.files import atomic_dir, read_json, remove_tree, write_json
from helpers.runs.config import CHECKPOINT_FIELDS

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
PROGRESS_FILE = "progress.json"
FORMAT = 2  # progress.json's layout: 2 holds the loop state whole under "state"; 1 (unnumbered) did not
_NAME = re.compile(r"^step-(\d+)$")


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
    leftovers = [*Path(folder).glob(".*.tmp"), *Path(folder).glob(".*.old")]
    for path in leftovers:
        remove_tree(path)
    return [p.name for p in leftovers]


@dataclass(frozen=True)
class Weights:
    """A model's weights serialized once, as the bytes of a safetensors file (what save_pretrained writes), and their
    sha256 from memory: the checkpoint's and the best model's file, at the price of one copy of the weights in memory."""
    data: bytes
    sha256: str

    @classmethod
    def of(cls, model_state):
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model_state.items()}
        data = safetensors_bytes(tensors, metadata={"format": "pt"})
        return cls(data, hashlib.sha256(data).hexdigest())

    def write(self, path, same_file=None):
        """Write the bytes to `path`, or hard-link `same_file` (written from these very bytes) there where links work."""
        if same_file is not None:
            with contextlib.suppress(OSError):  # no links on this file system: a copy
                os.link(same_file, path)
                return
        with open(path, "wb") as file:
            file.write(self.data)


def write_checkpoint(target, weights, trainer_state, progress, weights_file=None):
    """Write one checkpoint folder atomically; `weights_file` is a file already holding `weights` (linked, not copied)."""
    with atomic_dir(target) as tmp:
        weights.write(tmp / MODEL_FILE, same_file=weights_file)
        checksums = {MODEL_FILE: weights.sha256, STATE_FILE: _save_trainer_state(trainer_state, tmp / STATE_FILE)}
        write_json(tmp / PROGRESS_FILE, {**progress, "sha256": checksums})


def _save_trainer_state(trainer_state, path):
    """torch.save through a hashing writer; returns the file's sha256 without reading it back.
    (Its own function so that tests can kill the process between the two files of a save.)"""
    with open(path, "wb") as file:
        writer = _HashingWriter(file)
        try:
            torch.save(trainer_state, writer)
        except RuntimeError:
            # after a failed write torch still closes its archive, and that raises "[enforce fail at
            # inline_container.cc] unexpected pos": the write's own error (a full disk) says what happened
            if writer.error is not None:
                raise writer.error from None
            raise
    return writer.digest.hexdigest()


class _HashingWriter:
    """A file that hashes what torch.save writes through it, and keeps the error of a write that failed."""

    def __init__(self, file):
        self.file, self.digest, self.error = file, hashlib.sha256(), None

    def write(self, data):
        self.digest.update(data)
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        self.file.flush()


def read_checkpoint(folder, fingerprint, model_state):
    """(weights, trainer state, progress) of a checkpoint, or CheckpointError saying why it cannot be used; every
    weight of `model_state` (the model about to be restored) must be there with the same shape and dtype."""
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
    for values in (pc.list_flatten(train.column("input_ids")), train.column("labels")):
        digest.update(values.to_numpy().tobytes())
    # compiling changes the kernels, not what is computed: a compiled run may resume an eager one's checkpoint;
    # nor do the checkpoint cadence and the experiment tracker change what is trained
    shaping = {k: v for k, v in dataclasses.asdict(settings).items()
               if k not in (*CHECKPOINT_FIELDS, "compile", "tracker")}
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


def capture_rng():
    """The random states of Python, NumPy and torch (CPU and every GPU), as plain data."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    numpy = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position), "has_gauss": int(has_gauss),
             "gauss": float(gauss)}
    return {"python": [version, list(python_state), python_gauss], "numpy": numpy, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state):
    version, python_state, python_gauss = state["python"]
    random.setstate((version, tuple(python_state), python_gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def tensor_bytes(obj):
    """Bytes of the tensors in a nested structure: about what torch.save writes of it."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return sum(tensor_bytes(value) for value in values)


def _sha256(path):
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
