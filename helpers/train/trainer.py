"""The training loop shared by teacher and student, written on Hugging Face Accelerate.

Accelerate owns devices, mixed precision and multi-process training (helpers.core.accelerators); this
module owns the recipe: AdamW without weight decay on biases and LayerNorm, linear warmup then
decay, gradient clipping and accumulation, validation after each epoch and the best model kept.
The teacher and the student differ only in the loss function they pass in. Batches come from
helpers.train.batching, checkpoints from helpers.train.checkpoints, predictions from helpers.train.prediction.
"""
import contextlib
import dataclasses
import gc
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from accelerate.utils.memory import should_reduce_batch_size
from transformers import get_scheduler

from helpers.core.accelerators import make_accelerator, plain_model
from helpers.core.files import stop_if_disk_full, write_json
from helpers.core.progress import progress
from helpers.train.batching import EpochSampler, make_loader, split_batch, token_lengths
from helpers.train.checkpoint_files import MODEL_FILE, Weights, fingerprint
from helpers.train.checkpoints import Cadence, Checkpointer, save_best_model
from helpers.train.optimization import param_groups, planned_epochs
from helpers.train.prediction import forward, predict_logits, validation_scores

COMPILE_BACKEND = "inductor"  # torch.compile's default: fused kernels generated for the device
LOG_EVERY = 10  # optimizer steps between progress-bar loss updates


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    min_steps: int
    layer_decay: float
    batch_size: int
    grad_accum_steps: int
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    group_by_length: bool
    precision: str
    compile: bool
    tracker: str
    eval_batch_size: int
    seed: int
    checkpoint_minutes: float
    checkpoint_every: int
    keep_checkpoints: int
    keep_checkpoints_at_end: bool

    @classmethod
    def from_params(cls, params, student=False):
        shared = {name: getattr(params, name) for name in cls.__dataclass_fields__ if name not in ("epochs", "lr")}
        if student:
            return cls(epochs=params.student_epochs, lr=params.student_lr, **shared)
        return cls(epochs=params.epochs, lr=params.lr, **shared)


@dataclass
class LoopState:
    """Where the loop stands; checkpoints save and restore it whole (helpers.train.checkpoints)."""
    epoch: int = 1
    batches_done: int = 0  # of the current epoch
    step: int = 0  # optimizer steps, all epochs
    best_accuracy: float = -1.0
    best_checkpoint: str = None
    history: dict = field(default_factory=dict)  # "steps", "epochs", "settings", "precision", "precision_reason"

    def record_step(self, loss, lr):
        """Log one optimizer step; `loss` may stay a device tensor until `read_losses`."""
        self.step += 1
        steps = self.history["steps"]
        step_in_epoch = steps[-1]["step"] + 1 if steps and steps[-1]["epoch"] == self.epoch else 1
        steps.append({"epoch": self.epoch, "step": step_in_epoch, "loss": loss, "lr": lr})

    def read_losses(self):
        """Turn the step losses still held as device tensors into numbers, with one transfer.

        Reading a loss forces the GPU to finish its queued work; doing it every step would leave the
        GPU idle while Python prepares the next batch, so the loop reads them every LOG_EVERY steps.
        """
        pending = []
        for record in reversed(self.history["steps"]):  # the unread ones are the newest
            if not torch.is_tensor(record["loss"]):
                break
            pending.append(record)
        if pending:
            for record, value in zip(pending, torch.stack([r["loss"] for r in pending]).tolist()):
                record["loss"] = value

    def end_epoch(self, scores):
        """Record an epoch's validation scores; True if they are the best so far."""
        improved = scores["accuracy"] > self.best_accuracy
        self.best_accuracy = max(self.best_accuracy, scores["accuracy"])
        self.history["epochs"].append({**scores, "epoch": self.epoch, "saved": improved})
        self.epoch, self.batches_done = self.epoch + 1, 0
        return improved


def classification_loss(logits, batch):
    return F.cross_entropy(logits, batch["labels"])


def train(model, tokenized, tokenizer, settings, out_dir, loss_fn=classification_loss, extra_columns=(), accelerator=None):
    """Fine-tune `model` on tokenized["train"], validating on tokenized["val"] after each epoch.

    Checkpoints go to `out_dir/checkpoints` when helpers.train.checkpoints.Cadence says so (every
    `settings.checkpoint_minutes`, or every `settings.checkpoint_every` optimizer steps), never
    after the last epoch; when one is there already, training resumes from the newest usable one.
    The best model by validation accuracy is saved with its tokenizer to `out_dir/model`
    (safetensors); the per-step and per-epoch history goes to `out_dir/history.json`. Once that is
    written the stage is done, and its checkpoints are deleted unless `settings.keep_checkpoints_at_end`.
    Training runs on `accelerator`, the stage's, or on one made here (make_accelerator, tracking to `out_dir`).
    Returns the history; `model` comes back plain (no Accelerate wrappers).
    """
    out_dir = Path(out_dir)
    loop = _prepare(model, tokenized, tokenizer, settings, extra_columns, accelerator or make_accelerator(settings, out_dir))
    accelerator, prepared = loop.accelerator, loop.model
    checkpointer = Checkpointer(out_dir / "checkpoints", fingerprint(prepared, tokenized["train"], settings, accelerator),
                                accelerator, prepared, loop.optimizer, loop.scheduler, loop.sampler,
                                settings.keep_checkpoints, Cadence(settings.checkpoint_every, settings.checkpoint_minutes))
    state = checkpointer.resume(LoopState(history={
        "steps": [], "epochs": [], "settings": dataclasses.asdict(settings),
        "precision": accelerator.mixed_precision, "precision_reason": accelerator.precision_reason}))
    accelerator.init_trackers(out_dir.name, config=dataclasses.asdict(settings))  # a no-op with tracker 'none'
    step = Stepper(prepared, loop.optimizer, loop.scheduler, accelerator, settings, loss_fn)
    while state.epoch <= loop.epochs:
        _train_epoch(loop, state, step, checkpointer, settings)
        _end_epoch(loop, state, checkpointer, tokenized["val"], tokenizer, settings, out_dir)
    if accelerator.is_main_process:  # the stage's done marker (helpers.runs.layout), so the checkpoints may go after it
        with stop_if_disk_full("writing history.json", out_dir, len(json.dumps(state.history)), checkpointer.disk_advice):
            write_json(out_dir / "history.json", state.history)
    checkpointer.finish(keep=settings.keep_checkpoints_at_end)
    for tracker in accelerator.trackers:  # not accelerator.end_training(): it also ends the process group,
        tracker.finish()                  # which the next stage of a multi-process launch still needs
    plain_model(model)  # the caller's model leaves the loop without Accelerate's wrappers
    return state.history


def _train_epoch(loop, state, step, checkpointer, settings):
    """Train the rest of epoch `state.epoch` (all of it, unless a resumed checkpoint stopped inside it):
    optimizer steps over windows of grad_accum_steps batches, the loss read every LOG_EVERY steps, and a
    checkpoint whenever one is due, except after the epoch's last step, where _end_epoch decides."""
    accelerator, n_batches = loop.accelerator, len(loop.loader)
    loop.model.train()
    loop.sampler.epoch = state.epoch
    batches = accelerator.skip_first_batches(loop.loader, state.batches_done) if state.batches_done else loop.loader
    bar = progress(batches, desc=f"epoch {state.epoch}", initial=state.batches_done, total=n_batches,
                   unit="reviews", unit_scale=settings.batch_size, disable=not accelerator.is_local_main_process)
    window = []  # the batches of one optimizer step (gradient accumulation)
    for batch in bar:
        window.append(batch)
        state.batches_done += 1
        if len(window) < settings.grad_accum_steps and state.batches_done < n_batches:
            continue
        state.record_step(step(window), max(loop.scheduler.get_last_lr()))  # the head's rate
        window = []
        if state.step % LOG_EVERY == 0:
            _log_loss(state, bar, accelerator)
        if state.batches_done < n_batches and checkpointer.due(state.step):
            state.read_losses()
            checkpointer.save(state)


def _log_loss(state, bar, accelerator):
    state.read_losses()
    last = state.history["steps"][-1]
    bar.set_postfix(loss=f"{last['loss']:.4f}", refresh=False)
    accelerator.log({"train/loss": last["loss"], "train/lr": last["lr"]}, step=state.step)


def _end_epoch(loop, state, checkpointer, val, tokenizer, settings, out_dir):
    """Validate; save the model when it is the best so far; write a checkpoint when one is due, but never
    after the last epoch (the stage ends there). The weights are serialized once for both, and the
    checkpoint links the model's file instead of writing the weights again (helpers.train.checkpoint_files.Weights)."""
    accelerator = loop.accelerator
    state.read_losses()
    logits = predict_logits(loop.model, val, tokenizer, settings.eval_batch_size, accelerator, "validating")
    scores = validation_scores(logits, loop.val_labels)
    accelerator.log({f"val/{name}": value for name, value in scores.items()}, step=state.step)
    epoch, last = state.epoch, state.epoch == loop.epochs
    improved = state.end_epoch(scores)
    checkpoint = not last and checkpointer.due(state.step, epoch_end=True)
    weights = None
    if accelerator.is_main_process and (improved or checkpoint):
        weights = Weights.of(accelerator.unwrap_model(loop.model).state_dict())
    if improved:
        state.best_checkpoint = None  # an older checkpoint no longer holds the best weights
        save_best_model(accelerator, loop.model, tokenizer, out_dir / "model", weights, checkpointer.disk_advice)
    accelerator.print(f"epoch {epoch}: val accuracy {scores['accuracy']:.4f}, val loss {scores['loss']:.4f}"
                      + (" (best so far, saved)" if improved else ""))
    if checkpoint:
        checkpointer.save(state, best=improved, weights=weights,
                          weights_file=out_dir / "model" / MODEL_FILE if improved else None)


@dataclass
class PreparedLoop:
    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    loader: object
    sampler: EpochSampler
    epochs: int  # settings.epochs, or more to reach settings.min_steps
    val_labels: np.ndarray  # read once from Arrow: a datasets column read row by row costs ms at every epoch end


def _prepare(model, tokenized, tokenizer, settings, extra_columns, accelerator):
    """The model, optimizer, schedule and batches, prepared on `accelerator`."""
    set_seed(settings.seed)
    sampler = EpochSampler(token_lengths(tokenized["train"]), settings.batch_size, settings.seed, settings.group_by_length)
    loader = make_loader(tokenized["train"], tokenizer, settings.batch_size, sampler, extra_columns)
    model.to(accelerator.device)  # before the optimizer, which on a GPU checks where its parameters live
    # fused: one kernel for the whole update instead of one per tensor
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay, settings.lr, settings.layer_decay),
                                  fused=accelerator.device.type in ("cpu", "cuda") or None)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if settings.compile:  # in place, so saved weights keep their names; dynamic: length-grouped batches vary in length
        model.compile(dynamic=True, backend=COMPILE_BACKEND)
    steps_per_epoch, epochs = planned_epochs(len(loader), settings)
    total_steps = steps_per_epoch * epochs
    # with split batches a prepared scheduler steps once per optimizer step, whatever the process count
    scheduler = accelerator.prepare(get_scheduler(
        "linear", optimizer, num_warmup_steps=round(settings.warmup_ratio * total_steps), num_training_steps=total_steps))
    val_labels = tokenized["val"].with_format("arrow")["labels"].to_numpy().copy()  # writable, as torch wants it
    return PreparedLoop(accelerator, model, optimizer, scheduler, loader, sampler, epochs, val_labels)


class Stepper:
    """One optimizer step on a window of batches: `step(batches)` returns their mean loss.

    `step` is the step itself, whole: forward, loss and backward for each piece of each batch, then
    gradient clipping, the optimizer and the scheduler. Calling the Stepper runs it inside the
    out-of-memory handling: each batch runs in `parts` pieces, 1 until the device runs out of memory;
    then the step starts again with pieces half the size (twice the accumulation, the same effective
    batch), and stays so for the rest of training.
    """

    def __init__(self, model, optimizer, scheduler, accelerator, settings, loss_fn):
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.max_grad_norm, self.loss_fn, self.parts = settings.max_grad_norm, loss_fn, 1
        self.per_device = settings.batch_size // accelerator.num_processes  # reviews of a whole batch on each device

    def __call__(self, batches):
        while True:
            try:
                return self.step(batches)
            except RuntimeError as error:
                if not should_reduce_batch_size(error):
                    raise
                self.optimizer.zero_grad(set_to_none=True)  # what the failed try accumulated goes
                self._halve(error)

    def step(self, batches):
        """The mean over `batches` of each batch's mean loss, backpropagated piece by piece, then one update.

        A piece's loss is weighted by its share of its batch, so the gradients are those of whole
        batches; processes synchronise gradients only after the last piece."""
        model, accelerator = self.model, self.accelerator
        pieces = [(piece, share / len(batches)) for batch in batches for piece, share in split_batch(batch, self.parts)]
        total = 0.0
        for i, (piece, weight) in enumerate(pieces):
            with accelerator.no_sync(model) if i < len(pieces) - 1 else contextlib.nullcontext():
                logits = forward(model, piece)
                loss = self.loss_fn(logits, piece)
                accelerator.backward(loss * weight)
            total = total + loss.detach().float() * weight
        if self.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return total

    def _halve(self, error):
        per_device = self.per_device
        if self.parts >= per_device:
            raise RuntimeError("out of memory with 1 review per device: the model and one review of max_length "
                               "tokens do not fit; lower max_length, train in bf16/fp16, or use a larger GPU") from error
        old = math.ceil(per_device / self.parts)
        self.parts *= 2
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.accelerator.print(
            f"out of memory with {old} reviews per device: halving to {math.ceil(per_device / self.parts)} "
            f"and doubling gradient accumulation ({self.parts} pieces per batch), so the effective batch is "
            f"unchanged; this step starts again")
