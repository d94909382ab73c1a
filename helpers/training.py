"""The training loop shared by teacher and student, written on Hugging Face Accelerate.

Accelerate owns devices, mixed precision, gradient accumulation and multi-process training;
this module owns the recipe: AdamW without weight decay on biases and LayerNorm, linear
warmup then decay, gradient clipping, validation after each epoch and the best model kept.
The teacher and the student differ only in the loss function they pass in.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, get_scheduler
from transformers.trainer_pt_utils import LengthGroupedSampler

from helpers.config import ConfigError
from helpers.io import atomic_dir, write_json
from helpers.progress import progress

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")


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
    eval_batch_size: int
    seed: int

    @classmethod
    def from_params(cls, params, student=False):
        shared = {name: getattr(params, name) for name in cls.__dataclass_fields__ if name not in ("epochs", "lr")}
        if student:
            return cls(epochs=params.student_epochs, lr=params.student_lr, **shared)
        return cls(epochs=params.epochs, lr=params.lr, **shared)


def mixed_precision(setting):
    """Accelerate's mixed_precision for a `precision` parameter: bf16/fp16 on a GPU, fp32 on the CPU."""
    cuda = torch.cuda.is_available()
    if setting == "auto":
        if not cuda:
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp16" and not cuda:
        raise ConfigError("precision 'fp16' needs a CUDA GPU; use 'auto' or 'fp32' on the CPU")
    return "no" if setting == "fp32" else setting


def make_accelerator(settings):
    return Accelerator(
        mixed_precision=mixed_precision(settings.precision),
        gradient_accumulation_steps=settings.grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=settings.seed),
    )


def make_loader(dataset, tokenizer, batch_size, shuffle, extra_columns=(), group_by_length=False, seed=0):
    """Batches padded to their longest review, rounded up to a multiple of 8 for fast kernels.

    With `group_by_length`, reviews are shuffled, cut into groups of up to 50 batches, and sorted by
    length within each group, so a batch holds reviews of similar length and little padding
    while the order still changes every epoch.
    """
    columns = ["input_ids", "attention_mask", "labels", *extra_columns]
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8, return_tensors="pt")
    dataset = dataset.select_columns(columns)
    if group_by_length:
        lengths = [len(ids) for ids in dataset["input_ids"]]
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collator)


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

    The best model by validation accuracy is saved with its tokenizer to `out_dir/model`
    (safetensors); the per-step and per-epoch history goes to `out_dir/history.json`.
    Returns the history.
    """
    out_dir = Path(out_dir)
    set_seed(settings.seed)
    accelerator = make_accelerator(settings)
    train_loader = make_loader(tokenized["train"], tokenizer, settings.batch_size, True, extra_columns,
                               settings.group_by_length, settings.seed)
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

    steps_per_epoch = math.ceil(len(train_loader) / settings.grad_accum_steps)
    total_steps = steps_per_epoch * settings.epochs
    # a prepared scheduler steps once per process, so it counts steps across all processes
    scheduler = accelerator.prepare(get_scheduler(
        "linear", optimizer, num_warmup_steps=round(settings.warmup_ratio * total_steps) * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes))

    history = {"steps": [], "epochs": [], "settings": settings.__dict__, "precision": accelerator.mixed_precision}
    best_accuracy = -1.0
    for epoch in range(1, settings.epochs + 1):
        losses = _train_epoch(model, train_loader, optimizer, scheduler, accelerator, loss_fn, settings, epoch)
        history["steps"].extend(losses)
        val = validate(model, tokenized["val"], tokenizer, settings.eval_batch_size, accelerator)
        val["epoch"] = epoch
        improved = val["accuracy"] > best_accuracy
        if improved:
            best_accuracy = val["accuracy"]
            _save_model(accelerator, model, tokenizer, out_dir / "model")
        val["saved"] = improved
        history["epochs"].append(val)
        accelerator.print(f"epoch {epoch}: val accuracy {val['accuracy']:.4f}, val loss {val['loss']:.4f}"
                          + (" (best so far, saved)" if improved else ""))
    if accelerator.is_main_process:
        write_json(out_dir / "history.json", history)
    return history


def _train_epoch(model, loader, optimizer, scheduler, accelerator, loss_fn, settings, epoch):
    """One pass over the training batches; returns one record per optimizer step."""
    model.train()
    records, window = [], []
    bar = progress(loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process)
    for batch in bar:
        with accelerator.accumulate(model):
            loss = loss_fn(forward(model, batch), batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and settings.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        window.append(loss.detach().float().item())
        if accelerator.sync_gradients:
            step_loss = float(np.mean(window))
            records.append({"epoch": epoch, "step": len(records) + 1, "loss": step_loss,
                            "lr": scheduler.get_last_lr()[0]})
            bar.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
            window = []
    return records


def predict_logits(model, dataset, tokenizer, batch_size, accelerator, desc="predicting"):
    """Logits for every review of `dataset`, returned in the dataset's order.

    Reviews are predicted shortest first, so each batch pads to a length close to its own
    reviews' instead of to the longest review in a random batch; the logits are put back
    in order at the end. Gathering across processes drops the duplicates that even
    batching adds, so every review is counted once.
    """
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    loader = accelerator.prepare_data_loader(make_loader(dataset.select(order), tokenizer, batch_size, shuffle=False))
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in progress(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            chunks.append(accelerator.gather_for_metrics(forward(model, batch).float()).cpu())
    logits = torch.cat(chunks).numpy()
    in_order = np.empty_like(logits)
    in_order[order] = logits
    return in_order


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
