"""The training loop shared by teacher and student, written on Hugging Face Accelerate.

Accelerate owns devices, mixed precision, gradient accumulation and multi-process training;
this module owns the recipe: AdamW without weight decay on biases and LayerNorm, linear
warmup then decay, gradient clipping, validation after each epoch and the best model kept.
The teacher and the student differ only in the loss function they pass in.
"""
import contextlib
import gc
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DataLoaderConfiguration, extract_model_from_parallel, set_seed
from accelerate.utils.memory import should_reduce_batch_size
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, get_scheduler

from helpers.checkpoints import Checkpointer, CheckpointError
from helpers.config import ConfigError
from helpers.io import atomic_dir, write_json
from helpers.precision import choose_precision
from helpers.progress import progress

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")
COMPILE_BACKEND = "inductor"  # torch.compile's default: fused kernels generated for the device
LOG_EVERY = 10  # optimizer steps between progress-bar loss updates


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    batch_size: int
    grad_accum_steps: int
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    group_by_length: bool
    precision: str
    compile: bool
    eval_batch_size: int
    seed: int
    checkpoint_every: int
    keep_checkpoints: int

    @classmethod
    def from_params(cls, params, student=False):
        shared = {name: getattr(params, name) for name in cls.__dataclass_fields__ if name not in ("epochs", "lr")}
        if student:
            return cls(epochs=params.student_epochs, lr=params.student_lr, **shared)
        return cls(epochs=params.epochs, lr=params.lr, **shared)


def make_accelerator(settings):
    """An Accelerator for this process; under `accelerate launch` it joins the other processes.

    Batches are split across processes (`split_batches`): `batch_size` is the global batch of one
    step however many processes share it, so 1 and N processes see the same batches in the same
    order and train the same model, up to dropout masks and the order of floating-point sums.
    """
    choice = choose_precision(settings.precision)
    _forget_other_precision(choice.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=choice.mixed_precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )  # gradient accumulation is the loop's own (optimizer_step), so it can cut batches smaller on OOM
    accelerator.precision_reason = choice.reason
    for name in ("batch_size", "eval_batch_size"):
        if getattr(settings, name) % accelerator.num_processes:
            raise ConfigError(f"{name} {getattr(settings, name)} does not split evenly over "
                              f"{accelerator.num_processes} processes; make it a multiple of {accelerator.num_processes}")
    return accelerator


def _forget_other_precision(mixed_precision):
    """Let a single process change precision between loops (a test suite, a notebook re-run with other
    parameters): Accelerate keeps one per process and refuses another. A multi-process launch keeps its own."""
    held = AcceleratorState._shared_state.get("_mixed_precision")  # private, like the reset: no public way exists
    if held is not None and held != mixed_precision and PartialState().num_processes == 1:
        AcceleratorState._reset_state()


def plain_model(model):
    """`model` as a plain module, in place: no process wrapper and no autocast wrapper on `forward`.

    `accelerator.prepare` wraps the model's forward in bf16/fp16 autocast; a model that leaves a
    loop (saved, timed on the CPU, quantized, copied) must not carry that wrapper along: an int8
    copy would be handed bf16 activations, and a CPU timing would time bf16 instead of fp32.
    """
    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


class EpochSampler(Sampler):
    """The training order of each epoch, drawn from (seed, epoch) alone.

    Each epoch's order comes from a generator seeded with `seed + epoch - 1` rather than one
    whose state moves on, so it can be drawn again; checkpoints also store it, and a resumed
    epoch follows the stored order (`resume_order`), which stays right even if a library upgrade
    changed how orders are drawn. With `group_by_length`, reviews are shuffled, cut into groups
    of 50 batches and sorted by length within each group, so a batch holds reviews of similar
    length (little padding) while the order still changes every epoch. The epoch is set through
    `epoch`, not `set_epoch`, which Accelerate calls with its own count of passes over a loader.
    """

    def __init__(self, lengths, batch_size, seed, group_by_length):
        self.lengths, self.batch_size, self.seed, self.group_by_length = list(lengths), batch_size, seed, group_by_length
        self.epoch = 1
        self._cached = (None, None)  # (epoch, order): drawn once, or restored from a checkpoint

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        return iter(self.order(self.epoch))

    def order(self, epoch):
        """The order of review indices for `epoch`."""
        if self._cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch - 1)
            if self.group_by_length:
                order = length_grouped_order(self.lengths, self.batch_size, generator)
            else:
                order = torch.randperm(len(self.lengths), generator=generator).tolist()
            self._cached = (epoch, list(order))
        return self._cached[1]

    def resume_order(self, epoch, order):
        if sorted(order) != list(range(len(self.lengths))):
            raise CheckpointError(f"its stored data order ({len(order)} indices) does not cover the {len(self.lengths)} reviews")
        self._cached = (epoch, list(order))


def token_lengths(dataset):
    """Each review's number of tokens, read from the Arrow column (no Python lists of ids)."""
    return pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_numpy()


def length_grouped_order(lengths, batch_size, generator, group_batches=50):
    """Review indices in batches of similar length, the batches themselves in random order.

    Shuffle, cut into groups of `group_batches` batches, sort each group by length and cut it
    into batches; then shuffle the batches. (transformers' get_length_grouped_indices stops
    before that last shuffle, so each group runs longest to shortest; on a small training set,
    one group, a whole epoch went from the longest reviews to the shortest.) An incomplete
    batch stays last, so every other batch is full.
    """
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    group = group_batches * batch_size
    batches = []
    for start in range(0, len(shuffled), group):
        ordered = sorted(shuffled[start:start + group], key=lambda i: lengths[i], reverse=True)
        batches += [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    partial = [b for b in batches if len(b) < batch_size]
    return [i for k in torch.randperm(len(full), generator=generator).tolist() for i in full[k]] + sum(partial, [])


def make_loader(dataset, tokenizer, batch_size, sampler=None, extra_columns=()):
    """Batches padded to their longest review, rounded up to a multiple of 8 for fast kernels.

    Without a sampler the batches follow the dataset's order. The loader draws its worker seed
    from a generator of its own, so starting a pass over it does not move torch's global random
    state (which dropout uses): a resumed run then draws exactly the numbers an unbroken one does.
    """
    columns = ["input_ids", "attention_mask", "labels", *extra_columns]
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8, return_tensors="pt")
    return DataLoader(dataset.select_columns(columns), batch_size=batch_size, sampler=sampler, collate_fn=collator,
                      generator=torch.Generator().manual_seed(0))


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(NO_DECAY) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def classification_loss(logits, batch):
    return F.cross_entropy(logits, batch["labels"])


def forward(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def train(model, tokenized, tokenizer, settings, out_dir, loss_fn=classification_loss, extra_columns=()):
    """Fine-tune `model` on tokenized["train"], validating on tokenized["val"] after each epoch.

    Checkpoints go to `out_dir/checkpoints` every `settings.checkpoint_every` optimizer steps and
    at each epoch end; when one is there already, training resumes from the newest usable one.
    The best model by validation accuracy is saved with its tokenizer to `out_dir/model`
    (safetensors); the per-step and per-epoch history goes to `out_dir/history.json`.
    Returns the history.
    """
    out_dir = Path(out_dir)
    set_seed(settings.seed)
    accelerator = make_accelerator(settings)
    sampler = EpochSampler(token_lengths(tokenized["train"]), settings.batch_size, settings.seed, settings.group_by_length)
    train_loader = make_loader(tokenized["train"], tokenizer, settings.batch_size, sampler, extra_columns)
    model.to(accelerator.device)  # before the optimizer, which on a GPU checks where its parameters live
    # one fused kernel for the whole update: on a 2-core CPU 23 ms a step instead of 136 (MiniLM-L6)
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr,
                                  fused=accelerator.device.type in ("cpu", "cuda") or None)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if settings.compile:  # in place, so saved weights keep their names; dynamic: length-grouped batches vary in length
        model.compile(dynamic=True, backend=COMPILE_BACKEND)

    steps_per_epoch = math.ceil(len(train_loader) / settings.grad_accum_steps)
    total_steps = steps_per_epoch * settings.epochs
    # with split batches a prepared scheduler steps once per optimizer step, whatever the process count
    scheduler = accelerator.prepare(get_scheduler(
        "linear", optimizer, num_warmup_steps=round(settings.warmup_ratio * total_steps), num_training_steps=total_steps))

    checkpointer = Checkpointer(out_dir / "checkpoints", fingerprint(model, tokenized, settings, accelerator),
                                accelerator, model, optimizer, scheduler, sampler, settings.keep_checkpoints)
    state = checkpointer.resume(fresh_state(settings, accelerator))
    splitter = BatchSplitter(accelerator, settings.batch_size)
    while state["epoch"] <= settings.epochs:
        sampler.epoch = state["epoch"]
        loader = train_loader
        if state["batches_done"]:
            loader = accelerator.skip_first_batches(train_loader, state["batches_done"])
        _train_epoch(model, optimizer, scheduler, accelerator, settings, checkpointer, state, loader, loss_fn,
                     n_batches=len(train_loader), splitter=splitter)
        val = validate(model, tokenized["val"], tokenizer, settings.eval_batch_size, accelerator)
        improved = val["accuracy"] > state["best_accuracy"]
        if improved:
            state["best_accuracy"] = val["accuracy"]
            _save_model(accelerator, model, tokenizer, out_dir / "model")
        state["history"]["epochs"].append({**val, "epoch": state["epoch"], "saved": improved})
        accelerator.print(f"epoch {state['epoch']}: val accuracy {val['accuracy']:.4f}, val loss {val['loss']:.4f}"
                          + (" (best so far, saved)" if improved else ""))
        state["epoch"], state["batches_done"] = state["epoch"] + 1, 0
        checkpointer.save(state, best=improved)
    if accelerator.is_main_process:
        write_json(out_dir / "history.json", state["history"])
    plain_model(model)  # the caller's model leaves the loop without Accelerate's wrappers
    return state["history"]


def fresh_state(settings, accelerator):
    """Where a loop that has not trained yet stands; checkpoints store and restore this record."""
    history = {"steps": [], "epochs": [], "settings": settings.__dict__, "precision": accelerator.mixed_precision,
               "precision_reason": accelerator.precision_reason}
    return {"epoch": 1, "batches_done": 0, "step": 0, "best_accuracy": -1.0, "best_checkpoint": None, "history": history}


def fingerprint(model, tokenized, settings, accelerator):
    """What a checkpoint must match to be resumed: the settings that shape training, the model, the data."""
    train = tokenized["train"].with_format("arrow")[:]
    digest = hashlib.sha256()
    for column in ("input_ids", "labels"):
        values = train.column(column)
        digest.update((pc.list_flatten(values) if column == "input_ids" else values).to_numpy().tobytes())
    # compiling changes the kernels, not what is computed: a compiled run may resume an eager one's checkpoint
    shaping = {k: v for k, v in settings.__dict__.items() if k not in ("checkpoint_every", "keep_checkpoints", "compile")}
    model = accelerator.unwrap_model(model)
    return {**shaping, "model": type(model).__name__, "model_parameters": sum(p.numel() for p in model.parameters()),
            "train_reviews": train.num_rows, "train_data_sha256": digest.hexdigest(),
            "processes": accelerator.num_processes}


def _train_epoch(model, optimizer, scheduler, accelerator, settings, checkpointer, state, loader, loss_fn, n_batches,
                 splitter):
    """Train on the rest of one epoch, checkpointing every `checkpoint_every` optimizer steps.

    Step losses stay on the device until they are needed (every LOG_EVERY steps for the
    progress bar, before a checkpoint, at the end): reading one forces the GPU to finish its
    queued work, which per step would leave it idle while Python prepares the next batch.
    """
    epoch = state["epoch"]
    model.train()
    window, pending = [], []  # the batches of the current optimizer step; step records whose loss is still a tensor
    steps = state["history"]["steps"]
    steps_this_epoch = sum(r["epoch"] == epoch for r in steps)  # more than 0 when resuming mid-epoch
    bar = progress(loader, desc=f"epoch {epoch}", initial=state["batches_done"], total=n_batches,
                   disable=not accelerator.is_local_main_process)
    for batch in bar:
        window.append(batch)
        state["batches_done"] += 1
        if len(window) < settings.grad_accum_steps and state["batches_done"] < n_batches:
            continue
        loss = optimizer_step(model, optimizer, scheduler, accelerator, settings.max_grad_norm, window, loss_fn, splitter)
        window = []
        state["step"] += 1
        steps_this_epoch += 1
        steps.append({"epoch": epoch, "step": steps_this_epoch, "loss": loss, "lr": scheduler.get_last_lr()[0]})
        pending.append(steps[-1])
        if state["step"] % LOG_EVERY == 0:
            _read_losses(pending)
            bar.set_postfix(loss=f"{steps[-1]['loss']:.4f}", refresh=False)
        every = settings.checkpoint_every
        if every and state["step"] % every == 0 and state["batches_done"] < n_batches:
            _read_losses(pending)
            checkpointer.save(state)  # at an epoch's end, the checkpoint follows validation instead
    _read_losses(pending)


def optimizer_step(model, optimizer, scheduler, accelerator, max_grad_norm, batches, loss_fn, splitter):
    """One optimizer step on the mean loss of `batches` (the gradient-accumulation window); returns that loss.

    Each batch runs in `splitter.parts` pieces. When the device runs out of memory, the step is
    started again with pieces half the size: twice the accumulation, the same effective batch.
    """
    while True:
        try:
            loss = _accumulate_gradients(model, accelerator, batches, loss_fn, splitter.parts)
            break
        except RuntimeError as error:
            if not should_reduce_batch_size(error):
                raise
            optimizer.zero_grad(set_to_none=True)
            splitter.halve(error)
    if max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss


def _accumulate_gradients(model, accelerator, batches, loss_fn, parts):
    """Backpropagate the mean over `batches` of each batch's mean loss, running each in `parts` pieces.

    A piece's loss is weighted by its share of its batch, so the gradients are those of whole
    batches; processes synchronise gradients only after the last piece.
    """
    pieces = [(piece, share / len(batches)) for batch in batches for piece, share in _pieces(batch, parts)]
    total = 0.0
    for i, (piece, weight) in enumerate(pieces):
        with accelerator.no_sync(model) if i < len(pieces) - 1 else contextlib.nullcontext():
            loss = loss_fn(forward(model, piece), piece)
            accelerator.backward(loss * weight)
        total = total + loss.detach().float() * weight
    return total


def _pieces(batch, parts):
    """`batch` cut along its rows into at most `parts` pieces, each with its share of the rows."""
    rows = len(batch["input_ids"])
    cuts = [torch.tensor_split(values, min(parts, rows)) for values in batch.values()]
    return [({key: values[i] for key, values in zip(batch, cuts)}, len(cuts[0][i]) / rows) for i in range(len(cuts[0]))]


class BatchSplitter:
    """How many pieces each batch runs in: 1 until the device runs out of memory, then doubled each time."""

    def __init__(self, accelerator, batch_size):
        self.accelerator, self.per_device, self.parts = accelerator, batch_size // accelerator.num_processes, 1

    def halve(self, error):
        if self.parts >= self.per_device:
            raise RuntimeError(f"out of memory with 1 review per device: the model and one review of max_length "
                               "tokens do not fit; lower max_length, train in bf16/fp16, or use a larger GPU") from error
        old = math.ceil(self.per_device / self.parts)
        self.parts *= 2
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.accelerator.print(
            f"out of memory with {old} reviews per device: halving to {math.ceil(self.per_device / self.parts)} "
            f"and doubling gradient accumulation ({self.parts} pieces per batch), so the effective batch is "
            f"unchanged; this step starts again")


def _read_losses(pending):
    """Turn the step losses still held as device tensors into numbers, with one transfer; empties `pending`."""
    if pending:
        for record, value in zip(pending, torch.stack([r["loss"] for r in pending]).tolist()):
            record["loss"] = value
        pending.clear()


def predict_logits(model, dataset, tokenizer, batch_size, accelerator=None, desc="predicting"):
    """Logits for every review of `dataset`, returned in the dataset's order.

    Reviews are predicted shortest first, so each batch pads to a length close to its own
    reviews' instead of to the longest review in a random batch; the logits are put back
    in order at the end. With an accelerator, the batches go to its devices and gathering
    across processes drops the duplicates that even batching adds, so every review is
    counted once; without one, the model runs where it is (the CPU timings).
    """
    order = np.argsort(token_lengths(dataset), kind="stable")
    loader = make_loader(dataset.select(order), tokenizer, batch_size)
    gather, show = (lambda logits: logits), True
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
        gather, show = accelerator.gather_for_metrics, accelerator.is_local_main_process
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in progress(loader, desc=desc, disable=not show, leave=False):
            chunks.append(gather(forward(model, batch).float()).cpu())
    logits = torch.cat(chunks).numpy()
    in_order = np.empty_like(logits)
    in_order[order] = logits
    return in_order


def predict_on_device(model, dataset, tokenizer, settings, desc="predicting"):
    """`predict_logits` on the best device (all of them, in a multi-process launch) in the run's
    precision; `model` comes back plain (`plain_model`), ready to be timed, quantized or saved."""
    accelerator = make_accelerator(settings)
    try:
        return predict_logits(accelerator.prepare(model), dataset, tokenizer, settings.eval_batch_size, accelerator,
                              desc=desc)
    finally:
        plain_model(model)


def validate(model, dataset, tokenizer, batch_size, accelerator):
    logits = predict_logits(model, dataset, tokenizer, batch_size, accelerator, desc="validating")
    labels = np.asarray(dataset["labels"])
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"accuracy": float((logits.argmax(-1) == labels).mean()), "loss": loss}


def _save_model(accelerator, model, tokenizer, target):
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_dir(target) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
