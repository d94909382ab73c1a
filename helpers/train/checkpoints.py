"""When the training loop writes a checkpoint, and how it saves and restores its whole state with one. When
(`Cadence`): every `checkpoint_minutes` by default, or every `checkpoint_every` optimizer steps; never after
the last epoch; a finished stage deletes them unless `keep_checkpoints_at_end`. A full disk stops the run with
DiskFullError, the older checkpoints intact. The files and their checks: helpers.train.checkpoint_files."""
import dataclasses
import time
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, gather_object

from helpers.core.errors import CheckpointError
from helpers.core.files import atomic_dir, format_bytes, remove_tree, stop_if_disk_full
from helpers.train.checkpoint_files import (FORMAT, MODEL_FILE, Weights, capture_rng, checkpoint_name, list_checkpoints,
                                            read_checkpoint, remove_partial_writes, restore_rng, tensor_bytes,
                                            write_checkpoint)


class Cadence:
    """When the loop writes a checkpoint: with `every_steps` above 0, every that many optimizer steps and at each
    epoch end; otherwise once `minutes` have passed since the start or the last checkpoint (`clock`: seconds)."""

    def __init__(self, every_steps, minutes, clock=time.monotonic):
        self.every_steps, self.seconds, self.clock = every_steps, minutes * 60, clock
        self.since = clock()

    def due(self, step, epoch_end=False):
        if self.every_steps > 0:
            return epoch_end or step % self.every_steps == 0
        return self.clock() - self.since >= self.seconds

    def restart(self):
        """A checkpoint was just written: the minutes count from now."""
        self.since = self.clock()


class Checkpointer:
    """Saves and restores in `folder` the whole state of a prepared loop (helpers.train.trainer.PreparedLoop): its
    LoopState, model, optimizer, scheduler, loss scaler, sampler's order and random states. The first process
    writes; every process restores."""

    def __init__(self, loop, folder, fingerprint, keep, cadence):
        self.loop, self.accelerator = loop, loop.accelerator
        self.folder, self.fingerprint, self.keep, self.cadence = Path(folder), fingerprint, keep, cadence

    def due(self, step, epoch_end=False):
        """Whether to write a checkpoint now; every process gets the same answer."""
        decided = self.cadence.due(step, epoch_end)
        if self.cadence.every_steps <= 0 and self.accelerator.num_processes > 1:
            # clocks differ between processes, and all must save together: the first process's clock decides
            decided = broadcast_object_list([decided])[0]
        return decided

    def save(self, state, best=False, weights=None, weights_file=None):
        """Write a checkpoint of `state`. `weights` (a Weights) when the caller has serialized them already,
        `weights_file` when they are on disk already (the best model's file, which is then linked)."""
        self.accelerator.wait_for_everyone()
        # every process has random states of its own (dropout, its CUDA device): all are saved
        rng_by_process = gather_object([capture_rng()])
        name = checkpoint_name(state.step)
        state.best_checkpoint = name if best else state.best_checkpoint
        self.cadence.restart()
        if not self.accelerator.is_main_process:
            return
        started = time.perf_counter()
        loop, scaler = self.loop, self.accelerator.scaler
        weights = weights or Weights.of(self.accelerator.unwrap_model(loop.model).state_dict())
        trainer_state = {"optimizer": loop.optimizer.state_dict(), "scheduler": loop.scheduler.state_dict(),
                         "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_by_process,
                         "order": torch.tensor(loop.sampler.order(state.epoch))}
        needed = (0 if weights_file else len(weights.data)) + tensor_bytes(trainer_state)
        with stop_if_disk_full(f"writing checkpoint {name}", self.folder / name, needed, self.disk_advice):
            write_checkpoint(self.folder / name, weights, trainer_state,
                             {"format": FORMAT, "state": dataclasses.asdict(state), "fingerprint": self.fingerprint},
                             weights_file)
        for path in list_checkpoints(self.folder)[self.keep:]:  # the `keep` newest and the best stay
            if path.name != state.best_checkpoint:
                remove_tree(path)
        self.accelerator.print(f"checkpoint {name} saved in {time.perf_counter() - started:.1f} s")

    def disk_advice(self):
        """What to delete when the disk fills up, and where the rerun will start (for DiskFullError)."""
        newest = list_checkpoints(self.folder)
        return (f"delete run folders you no longer need and the checkpoints/ folders of finished stages "
                f"(`du -sh {self.folder.parent.parent.parent}/*/*` shows what takes the space), empty Google Drive's "
                f"trash if the run is on Drive (deleted files count against the quota until then), or lower "
                f"keep_checkpoints (now {self.keep}); the rerun resumes from "
                + (f"checkpoint {newest[0].name}" if newest else "the stage's start (no checkpoint yet)"))

    def finish(self, keep):
        """The stage has finished: its checkpoints go unless `keep` (a rerun then trains afresh from its inputs)."""
        if keep or not self.accelerator.is_main_process or not self.folder.exists():
            return
        files = [f for f in self.folder.rglob("*") if f.is_file()]
        # a file linked from the best model stays on disk under that name: it frees nothing
        freed = sum(f.stat().st_size for f in files if f.stat().st_nlink == 1)
        remove_tree(self.folder)
        self.accelerator.print(f"stage finished: its checkpoints are deleted ({format_bytes(freed)} freed; "
                               f"keep_checkpoints_at_end true keeps them)")

    def resume(self, fresh_state):
        """Restore the newest usable checkpoint and return its loop state; `fresh_state` when there is none."""
        say, main = self.accelerator.print, self.accelerator.is_main_process
        # the stage folder too: a kill while saving the best model
        leftovers = remove_partial_writes(self.folder) + remove_partial_writes(self.folder.parent) if main else []
        if leftovers:
            say(f"removed {len(leftovers)} unfinished write(s) in {self.folder.parent} (a kill during a save)")
        loop, found = self.loop, list_checkpoints(self.folder)
        model = self.accelerator.unwrap_model(loop.model)
        for path in found:
            try:
                weights, trainer_state, progress = read_checkpoint(path, self.fingerprint, model.state_dict())
                if set(progress["state"]) != {f.name for f in dataclasses.fields(fresh_state)}:
                    raise CheckpointError(f"its loop state has the fields {sorted(progress['state'])}, which this "
                                          "version does not use")
                state = dataclasses.replace(fresh_state, **progress["state"])
                loop.sampler.resume_order(state.epoch, trainer_state["order"].tolist())
            except CheckpointError as error:
                say(f"checkpoint {path} cannot be used: {error}; trying the next older one")
                continue
            model.load_state_dict(weights)
            loop.optimizer.load_state_dict(trainer_state["optimizer"])
            loop.scheduler.load_state_dict(trainer_state["scheduler"])
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


def save_best_model(accelerator, model, tokenizer, target, weights, disk_advice):
    """The best model so far as a transformers folder (as models.save_classifier writes it), from the weights already
    serialized in `weights`, replacing the previous best whole."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    plain = accelerator.unwrap_model(model)
    with stop_if_disk_full("saving the best model", target, len(weights.data), disk_advice), atomic_dir(target) as tmp:
        # the two fields save_pretrained fills in before writing the config (tests compare the folders byte for byte)
        plain.config.dtype, plain.config.architectures = str(plain.dtype).split(".")[1], [type(plain).__name__]
        plain.config.save_pretrained(tmp)
        weights.write(tmp / MODEL_FILE)
        tokenizer.save_pretrained(tmp)
