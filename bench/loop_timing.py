"""Our loop and the Hugging Face Trainer, run and timed the same way: setup apart, steps, epoch ends.

Used by `bench/train_speed.py` (its Trainer variant, and `--overhead`: the loops' fixed costs) and by
bench/gpu_check.py's bert-base and oom parts.

Timing. A forward pre-hook stamps every training forward pass (the model in training mode;
validation runs in eval mode and is not stamped). For a run of E epochs of S steps each:

- setup: from the call to the first training forward (accelerator, sampler and loaders, optimizer,
  ours' data fingerprint, the Trainer's length table...); the model is loaded before, alike for both;
- per step: the mean gap between consecutive forwards within an epoch (forward, backward, clipping,
  optimizer, schedule, logging, the next batch's collation and transfer);
- per epoch end: from an epoch's last forward to the next epoch's first (for the last epoch, to
  the return), less one step: validation, saving, starting the next pass over the data;
- per epoch: the loop (first forward to return, after torch.cuda.synchronize() on a GPU) over E.

Epoch-end work (`epoch_work`): "off": neither loop validates nor saves (the Trainer with
eval_strategy and save_strategy "no"; ours, which has no switch for it, with its validation pass
replaced by zero logits, no epoch counted as a new best and no checkpoint due: `epoch_end_work_off`;
it still prints its epoch line, with the scores of those logits). "on": both validate on the same
reviews after every epoch, save checkpoints and keep the best model: ours as the train stage runs
it, with a checkpoint due every epoch's worth of steps (`train_ours`), the Trainer with
eval_strategy and save_strategy "epoch", save_total_limit = keep_checkpoints and
load_best_model_at_end on validation accuracy. Both log the training loss every
trainer.LOG_EVERY steps and show a progress bar.
"""
import contextlib
import dataclasses
import math
import platform
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from helpers.core.precision import choose_precision
from helpers.data import imdb
from helpers.runs.config import resolve_params
from helpers.tokens import tokens
from helpers.train import checkpoints, optimization, trainer

EPOCH_WORK = ("off", "on")
TRAIN_COLUMNS = ["input_ids", "attention_mask", "labels"]


RESULTS = Path(__file__).resolve().parent / "results"  # git-ignored


def prepare(size):
    """Params, training texts, tokenized train/val splits and tokenizer for the benchmark's reviews
    (drawn, stratified and seeded, from `size`'s data: the committed sample unless it names another
    folder); plain truncation, as the seed recipe. One epoch unless `size` names more."""
    n_total = size["n_train"] + size["n_val"]
    params = resolve_params("quick", {"model": size["model"], "n_train": n_total, "val_fraction": size["n_val"] / n_total,
                                      "max_length": size["max_length"], "batch_size": size["batch_size"],
                                      "lr": size["lr"], "precision": size["precision"], "checkpoint_every": 0,
                                      "truncation_head": 1.0, "min_steps": 0, "tracker": "none",
                                      "data": size.get("data", "sample"), "epochs": size.get("epochs", 1),
                                      "n_test": 2})  # the test split is not used: the fewest reviews that hold both labels
    splits = imdb.make_splits(params)
    splits.pop("test")
    tokenizer = tokens.prepare_tokenizer(params, splits["train"]["text"].tolist())
    tokenized = tokens.tokenize_splits(splits, tokenizer, params.max_length)
    return params, splits["train"]["text"].tolist(), tokenized, tokenizer


def loop_precision(params):
    """The precision ours (and the Trainer, for a like-for-like race) trains in: fp32, bf16 or fp16."""
    chosen = choose_precision(params.precision).mixed_precision
    return "fp32" if chosen == "no" else chosen


def cpu_name():
    """The processor's model name as lscpu shows it (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepClock:
    """Stamps each training forward pass of `model`: (perf_counter, reviews in the batch).

    The hook is kept out of torch.compile's graph (a compiled model calls it eagerly before its graph)."""

    def __init__(self, model):
        self.stamps = []
        self.handle = model.register_forward_pre_hook(torch.compiler.disable(self._stamp), with_kwargs=True)

    def _stamp(self, module, args, kwargs):
        if module.training:
            ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            self.stamps.append((time.perf_counter(), len(ids)))

    def remove(self):
        self.handle.remove()


@dataclasses.dataclass
class LoopRun:
    precision: str
    setup_s: float  # call -> first training forward
    loop_s: float  # first training forward -> return
    stamps: list  # (seconds since the call, reviews) of each training forward
    losses: list  # the training losses the loop logged


def time_loop(train, model):
    """Run `train()` (which returns (precision, logged losses)) with `model` stamped; a LoopRun."""
    clock = StepClock(model)
    started = time.perf_counter()
    try:
        precision, losses = train()
        synchronize()
        ended = time.perf_counter()
    finally:
        clock.remove()
    if not clock.stamps:
        raise RuntimeError("the loop ran no training forward pass")
    first = clock.stamps[0][0]
    return LoopRun(precision, first - started, ended - first, [(t - started, rows) for t, rows in clock.stamps], losses)


def step_figures(run, epochs):
    """Seconds of setup, per step, per epoch end and per epoch of a run whose every forward was one step."""
    times = [t for t, _ in run.stamps] + [run.setup_s + run.loop_s]  # the return closes the last epoch
    steps = len(run.stamps) // epochs
    if steps * epochs != len(run.stamps):
        raise ValueError(f"{len(run.stamps)} forward passes do not split into {epochs} equal epochs")
    within, ends = [], []
    for epoch in range(epochs):
        stamps = times[epoch * steps:(epoch + 1) * steps + 1]  # this epoch's forwards, then the next start
        within += np.diff(stamps[:-1]).tolist()
        ends.append(stamps[-1] - stamps[-2])
    step_s = float(np.mean(within))
    return {"setup_s": run.setup_s, "step_s": step_s, "epoch_end_s": float(np.mean(ends)) - step_s,
            "epoch_s": run.loop_s / epochs, "loop_s": run.loop_s}


def _logits_of_a_skipped_validation(model, dataset, *args, **kwargs):
    return np.zeros((len(dataset), 2), dtype=np.float32)


def _never_improved(end_epoch):
    """LoopState.end_epoch, recording the epoch as before but never reporting a new best (nothing to save)."""
    def recorded(state, scores):
        end_epoch(state, scores)
        return False
    return recorded


def _do_nothing(*args, **kwargs):
    return None


def _never_due(*args, **kwargs):
    return False


# ours' epoch-end work, by the names helpers.train.trainer reaches it through: (owner, attribute, stand-in, required)
EPOCH_END_WORK = ((trainer, "predict_logits", lambda original: _logits_of_a_skipped_validation, True),
                  (trainer.LoopState, "end_epoch", _never_improved, True),
                  (checkpoints.Checkpointer, "save", lambda original: _do_nothing, True),
                  (checkpoints.Checkpointer, "due", lambda original: _never_due, False))  # where checkpoints have a cadence


@contextlib.contextmanager
def epoch_end_work_off():
    """Ours without validation and saving: its validation pass returns zero logits without running the
    model, no epoch counts as a new best (so no best model is serialized or written), and no checkpoint
    is due or written."""
    missing = [f"{getattr(owner, '__name__', owner)}.{name}" for owner, name, _, required in EPOCH_END_WORK
               if required and not hasattr(owner, name)]
    if missing:
        raise RuntimeError(f"bench/loop_timing.py turns ours' epoch-end work off by replacing {', '.join(missing)}, "
                           "which helpers.train.trainer no longer has: update EPOCH_END_WORK")
    with contextlib.ExitStack() as stack:
        for owner, name, stand_in, _ in EPOCH_END_WORK:
            if hasattr(owner, name):
                stack.enter_context(mock.patch.object(owner, name, stand_in(getattr(owner, name))))
        yield


def train_ours(model, params, tokenized, tokenizer, out_dir, epoch_work):
    """helpers.train.trainer.train as the train stage calls it; (precision, logged losses). With epoch-end
    work on, checkpoints are due every epoch's worth of steps, so one follows each epoch end but the
    last (where ours saves the model instead), as near the Trainer's save_strategy 'epoch' as ours goes."""
    if epoch_work == "on":
        steps_per_epoch, _ = optimization.planned_epochs(math.ceil(len(tokenized["train"]) / params.batch_size),
                                                     trainer.TrainSettings.from_params(params))
        params = dataclasses.replace(params, checkpoint_every=steps_per_epoch)
    settings = trainer.TrainSettings.from_params(params)
    with epoch_end_work_off() if epoch_work == "off" else contextlib.nullcontext():
        history = trainer.train(model, tokenized, tokenizer, settings, out_dir)
    written = [p.name for p in Path(out_dir).glob("*") if p.name in ("model", "checkpoints") and any(p.iterdir())]
    if epoch_work == "off" and written:
        raise RuntimeError(f"ours wrote {written} with its epoch-end work off: helpers.train.trainer saves through "
                           "another path now; update EPOCH_END_WORK in bench/loop_timing.py")
    return loop_precision(params), [step["loss"] for step in history["steps"]]


def train_trainer(model, params, tokenized, tokenizer, out_dir, epoch_work, group_by_length=False):
    """transformers' Trainer on the same reviews and settings; (precision, logged losses).

    Batches: DataCollatorWithPadding (padded to their longest review), random or, with
    `group_by_length`, the Trainer's own length-grouped sampler."""
    from transformers import DataCollatorWithPadding, Trainer

    columns = {name: tokenized[name].select_columns(TRAIN_COLUMNS) for name in ("train", "val")}
    trainer = Trainer(model=model, args=trainer_arguments(params, len(columns["train"]), out_dir, epoch_work,
                                                          group_by_length),
                      data_collator=DataCollatorWithPadding(tokenizer), train_dataset=columns["train"],
                      eval_dataset=columns["val"] if epoch_work == "on" else None, processing_class=tokenizer,
                      compute_metrics=_accuracy if epoch_work == "on" else None)
    trainer.train()
    # the loss every LOG_EVERY steps, then the mean over training (all a run of fewer steps logs)
    logged = [entry.get("loss", entry.get("train_loss")) for entry in trainer.state.log_history]
    return loop_precision(params), [loss for loss in logged if loss is not None]


def trainer_arguments(params, n_train, out_dir, epoch_work, group_by_length):
    """TrainingArguments matching ours: schedule, clipping, precision, logging, and the epoch-end work asked for."""
    from transformers import TrainingArguments

    precision = loop_precision(params)
    per_epoch = "epoch" if epoch_work == "on" else "no"
    keep_best = dict(save_total_limit=params.keep_checkpoints, load_best_model_at_end=True,
                     metric_for_best_model="accuracy", greater_is_better=True) if epoch_work == "on" else {}
    steps_per_epoch, epochs = optimization.planned_epochs(math.ceil(n_train / params.batch_size),
                                                      trainer.TrainSettings.from_params(params))
    return TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.eval_batch_size, num_train_epochs=epochs, learning_rate=params.lr,
        weight_decay=params.weight_decay, lr_scheduler_type="linear",
        warmup_steps=round(params.warmup_ratio * steps_per_epoch * epochs), max_grad_norm=params.max_grad_norm,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not torch.cuda.is_available(),
        eval_strategy=per_epoch, save_strategy=per_epoch, logging_strategy="steps", logging_steps=trainer.LOG_EVERY,
        report_to=[], seed=params.seed, dataloader_num_workers=0, **grouping_arguments(group_by_length), **keep_best)


def grouping_arguments(group_by_length):
    """Length grouping as this transformers names it: `train_sampling_strategy` (newer) or `group_by_length`."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


def _accuracy(prediction):
    logits, labels = prediction
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}
