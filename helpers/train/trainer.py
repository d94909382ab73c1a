"""The training loop shared by teacher and student, written on Hugging Face Accelerate, which owns devices, mixed
precision and processes (helpers.core.accelerators); this module owns the recipe: AdamW without weight decay on
biases and LayerNorm, linear warmup then linear decay or a constant rate, validation after each epoch and the best
model kept. Teacher and student differ only in their loss function. One optimizer step: helpers.train.stepper; batches:
helpers.train.batching; checkpoints: helpers.train.checkpoints."""
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from helpers.core.accelerators import make_accelerator, plain_model
from helpers.core.files import stop_if_disk_full, write_json
from helpers.core.progress import progress
from helpers.train.batching import EpochSampler, make_loader, token_lengths
from helpers.train.checkpoint_files import MODEL_FILE, Weights, fingerprint
from helpers.train.checkpoints import Cadence, Checkpointer, save_best_model
from helpers.train.optimization import make_scheduler, param_groups, planned_epochs
from helpers.train.prediction import predict_logits, validation_scores
from helpers.train.stepper import Stepper, scaler_record, skipped_note, skipped_steps, stop_if_diverged

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
    lr_schedule: str
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
        epochs, lr = (params.student_epochs, params.student_lr) if student else (params.epochs, params.lr)
        return cls(epochs=epochs, lr=lr, **shared)


@dataclass
class LoopState:
    """Where the loop stands; checkpoints save and restore it whole (helpers.train.checkpoints)."""
    epoch: int = 1
    batches_done: int = 0  # of the current epoch
    step: int = 0  # optimizer steps, all epochs
    best_accuracy: float = -1.0
    best_checkpoint: str = None
    history: dict = field(default_factory=dict)  # "steps", "epochs", "settings", "precision", "precision_reason"

    def record_step(self, loss, lr, scaler):
        """Log one optimizer step tried (`scaler`: scaler_record's); `loss` may stay a tensor until `read_losses`."""
        self.step += 1
        steps = self.history["steps"]
        step_in_epoch = steps[-1]["step"] + 1 if steps and steps[-1]["epoch"] == self.epoch else 1
        steps.append({"epoch": self.epoch, "step": step_in_epoch, "loss": loss, "lr": lr, **scaler})

    def read_losses(self):
        """Turn the step losses still held as device tensors into numbers, with one transfer (reading forces the
        GPU to finish its queue, so the loop reads every LOG_EVERY steps, not every step)."""
        pending = list(itertools.takewhile(lambda r: torch.is_tensor(r["loss"]), reversed(self.history["steps"])))
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
    """Fine-tune `model` on tokenized["train"], validating on tokenized["val"] after each epoch, on `accelerator`
    (the stage's) or one made here. Checkpoints go to `out_dir/checkpoints` when Cadence says so, and a rerun
    resumes from the newest usable one; the best model (by validation accuracy) to `out_dir/model`, the history
    to `out_dir/history.json`, the stage's done marker, after which its checkpoints go unless
    keep_checkpoints_at_end. Returns the history once every process can read the files; `model` comes back plain."""
    out_dir = Path(out_dir)
    loop = _prepare(model, tokenized, tokenizer, settings, extra_columns, accelerator or make_accelerator(settings, out_dir))
    accelerator, prepared = loop.accelerator, loop.model
    checkpointer = Checkpointer(loop, out_dir / "checkpoints", fingerprint(prepared, tokenized["train"], settings, accelerator),
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
    accelerator.wait_for_everyone()  # the first process has written the model: the others may load it now
    return state.history


def _train_epoch(loop, state, step, checkpointer, settings):
    """Train the rest of epoch `state.epoch`: optimizer steps over windows of grad_accum_steps batches, and a
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
        loss = step(window)
        state.record_step(loss, max(loop.scheduler.get_last_lr()), scaler_record(accelerator))  # the head's rate
        window = []
        if state.step % LOG_EVERY == 0:
            _log_loss(state, bar, accelerator, settings)
        if state.batches_done < n_batches and checkpointer.due(state.step):
            _read_losses(state, settings, accelerator)
            checkpointer.save(state)


def _read_losses(state, settings, accelerator):
    state.read_losses()
    stop_if_diverged(state.history["steps"], settings, accelerator)


def _log_loss(state, bar, accelerator, settings):
    _read_losses(state, settings, accelerator)
    steps = state.history["steps"]
    last, skipped = steps[-1], {"skipped": skipped_steps(steps)} if "scale" in steps[-1] else {}  # fp16's scaler
    bar.set_postfix(loss=f"{last['loss']:.4f}", **skipped, refresh=False)
    fp16 = {"train/loss_scale": last["scale"], "train/skipped_steps": skipped["skipped"]} if skipped else {}
    accelerator.log({"train/loss": last["loss"], "train/lr": last["lr"], **fp16}, step=state.step)


def _end_epoch(loop, state, checkpointer, val, tokenizer, settings, out_dir):
    """Validate; save the model when it is the best so far; a checkpoint when one is due, never after the last epoch.
    The weights are serialized once for both, and the checkpoint links the model's file (checkpoint_files.Weights)."""
    accelerator = loop.accelerator
    _read_losses(state, settings, accelerator)
    logits = predict_logits(loop.model, val, tokenizer, settings.eval_batch_size, accelerator, "validating")
    scores = validation_scores(logits, loop.val_labels)
    accelerator.log({f"val/{name}": value for name, value in scores.items()}, step=state.step)
    epoch, last = state.epoch, state.epoch == loop.epochs
    improved = state.end_epoch(scores)
    checkpoint = not last and checkpointer.due(state.step, epoch_end=True)
    serialize = accelerator.is_main_process and (improved or checkpoint)
    weights = Weights.of(accelerator.unwrap_model(loop.model).state_dict()) if serialize else None
    if improved:
        state.best_checkpoint = None  # an older checkpoint no longer holds the best weights
        save_best_model(accelerator, loop.model, tokenizer, out_dir / "model", weights, checkpointer.disk_advice)
    accelerator.print(f"epoch {epoch}: val accuracy {scores['accuracy']:.4f}, val loss {scores['loss']:.4f}"
                      + (" (best so far, saved)" if improved else "") + skipped_note(state.history["steps"]))
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
    # fused: one kernel for the whole update; not with a loss scaler, which hands a fused optimizer its inf check,
    # so that Accelerate would see no skipped step and step the schedule anyway
    fused = accelerator.device.type in ("cpu", "cuda") and accelerator.scaler is None
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay, settings.lr, settings.layer_decay), fused=fused or None)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if settings.compile:  # in place, so saved weights keep their names; dynamic: length-grouped batches vary in length
        model.compile(dynamic=True, backend=COMPILE_BACKEND)
    steps_per_epoch, epochs = planned_epochs(len(loader), settings)
    total = steps_per_epoch * epochs
    # with split batches a prepared scheduler steps once per optimizer step, whatever the process count
    scheduler = accelerator.prepare(make_scheduler(optimizer, total, settings))
    val_labels = tokenized["val"].with_format("arrow")["labels"].to_numpy().copy()  # writable, as torch wants it
    return PreparedLoop(accelerator, model, optimizer, scheduler, loader, sampler, epochs, val_labels)
