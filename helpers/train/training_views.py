"""03's views (05 shows some too): the model, one batch, the optimizer's groups, the schedule, the loss, as pandas
tables computed by the train stage's own code. Nothing here trains, and looking never moves the random generators."""
import contextlib
import json
import math
import random

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from transformers.utils import cached_file

from helpers.core import models
from helpers.core.padding import PAD_TO_MULTIPLE, padded_length
from helpers.core.sentiment import LABEL_NAMES, positive_probability
from helpers.train.batching import EpochSampler, make_loader, token_lengths
from helpers.train.optimization import make_scheduler, param_groups, planned_epochs, warmup_steps
from helpers.train.prediction import batch_logits
from helpers.train.trainer import classification_loss


@contextlib.contextmanager
def random_state_kept():
    """Run the body, then put Python's, NumPy's and torch's CPU generators back as they were. CUDA's are left alone:
    reading them would start CUDA in this process, which a multi-GPU `notebook_launcher` needs to find unstarted."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        for put_back, state in zip((random.setstate, np.random.set_state, torch.set_rng_state), states):
            put_back(state)


def untrained_teacher(params, tokenizer):
    """The teacher exactly as the train stage starts from it (same seed, so the same new head)."""
    with random_state_kept():
        return models.load_teacher(params.model, tokenizer, params.seed, params.attention_dropout, params.head)


def student_at_start(params, teacher):
    """The student exactly as the distill stage starts from it (from the teacher's layers, or a pre-trained one)."""
    with random_state_kept():
        return models.load_student(params.student_model, teacher, params.seed, params.attention_dropout)


def model_facts(**named_models):
    """Architecture, size and parameter count of each model, one column per keyword: model_facts(teacher=m)."""
    def facts(model):
        config = model.config
        return {"architecture": type(model).__name__, "layers": config.num_hidden_layers,
                "hidden size": config.hidden_size, "attention heads": config.num_attention_heads,
                "feed-forward size": getattr(config, "intermediate_size", getattr(config, "hidden_dim", None)),
                "vocabulary": config.vocab_size, "max positions": config.max_position_embeddings,
                "parameters": models.count_parameters(model)}
    return pd.DataFrame({name: facts(model) for name, model in named_models.items()})


def checkpoint_names(model_name):
    """Names of the weights in a model's pre-trained checkpoint, read from its safetensors header (no weights
    loaded); empty for models that have none (the tiny random one, the student made from the teacher)."""
    if model_name in (models.TINY, models.DISTIL_FROM_TEACHER):
        return set()
    source = models.model_source(model_name)
    path = cached_file(source, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    if path is None:  # a checkpoint in shards: the index names every weight
        with open(cached_file(source, "model.safetensors.index.json")) as index:
            return set(json.load(index)["weight_map"])
    with safe_open(path, "pt") as weights:
        return set(weights.keys())


def model_parts(model, checkpoint=None):
    """Parameters per part (embeddings, each layer, pooler, head) and where each part's weights come from: "pre-trained"
    when the checkpoint of model name `checkpoint` holds them all, "new (random)" when it holds none (the head)."""
    saved = checkpoint_names(checkpoint) if checkpoint else set()
    prefix = model.base_model_prefix + "."
    rows = {}
    for name, param in model.named_parameters():
        row = rows.setdefault(_part(name, prefix), {"parameters": 0, "tensors": 0, "in checkpoint": 0})
        row["parameters"] += param.numel()
        row["tensors"] += 1
        row["in checkpoint"] += bool(_saved_as(name, prefix) & saved)
    table = pd.DataFrame(rows).T.rename_axis("part")
    table["share"] = (table["parameters"] / table["parameters"].sum()).round(4)
    table["weights"] = ["pre-trained" if found == count else "new (random)" if found == 0 else "partly new"
                        for found, count in zip(table["in checkpoint"], table["tensors"])]
    return table[["parameters", "share", "tensors", "weights"]]


def _part(name, prefix):
    """'bert.encoder.layer.3.output.dense.weight' -> 'encoder layer 3'; 'classifier.bias' -> 'classifier'."""
    words = name.removeprefix(prefix).split(".")
    if "layer" in words[:-2] and words[words.index("layer") + 1].isdigit():
        return " ".join(words[:words.index("layer") + 2])
    return words[0]


def _saved_as(name, prefix):
    """The names a checkpoint may store parameter `name` under: with or without the base model's
    prefix, and with LayerNorm's old names (gamma, beta), which bert-base-uncased still uses."""
    names = {name, name.removeprefix(prefix), "bert." + name.removeprefix(prefix)}  # 'cls' head: BERT's weights
    old = {".LayerNorm.weight": ".LayerNorm.gamma", ".LayerNorm.bias": ".LayerNorm.beta"}
    return names | {n.removesuffix(new) + was for n in names for new, was in old.items() if n.endswith(new)}


def first_batch(dataset, tokenizer, settings, epoch=1, extra_columns=()):
    """The first batch the training loop draws in `epoch`, built as the trainer builds its loader (in a multi-process
    launch each process gets its slice of it)."""
    sampler = EpochSampler(token_lengths(dataset), settings.batch_size, settings.seed, settings.group_by_length)
    sampler.epoch = epoch
    return next(iter(make_loader(dataset, tokenizer, settings.batch_size, sampler, extra_columns)))


def batch_summary(batch):
    """Shapes of a batch's tensors, how long its reviews are, and the share of it that is padding."""
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    return pd.Series({**{f"{key} shape": tuple(values.shape) for key, values in batch.items()},
                      "shortest review (tokens)": int(lengths.min()), "longest review (tokens)": int(lengths.max()),
                      f"padded to (a multiple of {PAD_TO_MULTIPLE})": mask.shape[1],
                      "padding share": round(1 - float(lengths.sum()) / mask.numel(), 4)}, name="batch", dtype=object)


def batch_rows(batch):
    """One row per review of a batch: its tokens, the padding added to it, its label."""
    lengths = batch["attention_mask"].sum(dim=1)
    return pd.DataFrame({"tokens": lengths.tolist(), "padding": (batch["attention_mask"].shape[1] - lengths).tolist(),
                         "label": [LABEL_NAMES[int(label)] for label in batch["labels"]]},
                        index=pd.RangeIndex(len(lengths), name="review"))


def epoch_padding(dataset, settings, epoch=1):
    """Share of padding over a whole epoch's batches, with length grouping and in plain random order."""
    lengths, size = token_lengths(dataset), settings.batch_size
    shares = {}
    for grouped, name in ((True, "length-grouped (group_by_length: true)"),
                          (False, "random order (group_by_length: false)")):
        order = EpochSampler(lengths, size, settings.seed, grouped).order(epoch)
        batches = [lengths[order[start:start + size]] for start in range(0, len(order), size)]
        padded = sum(int(padded_length(batch.max())) * len(batch) for batch in batches)
        shares[name] = round(1 - int(lengths.sum()) / padded, 4)
    return pd.Series(shares, name="padding share")


def param_group_table(model, settings):
    """The optimizer's parameter groups: weight decay, learning rate (one per layer with layer_decay < 1), size."""
    names = {id(param): name for name, param in model.named_parameters()}
    rows = {}
    for group in param_groups(model, settings.weight_decay, settings.lr, settings.layer_decay):
        label = "with weight decay" if group["weight_decay"] else "without weight decay"
        if settings.layer_decay != 1.0:
            label += f", lr x {group['lr'] / settings.lr:.3g}"
        rows[label] = {"weight_decay": group["weight_decay"], "lr": group["lr"], "tensors": len(group["params"]),
                       "parameters": sum(p.numel() for p in group["params"]),
                       "for example": ", ".join(names[id(p)] for p in group["params"][:2])}
    return pd.DataFrame(rows).T


def optimizer_steps(n_reviews, settings):
    """(optimizer steps in all, of which warmup) as helpers.train.trainer counts them."""
    steps_per_epoch, epochs = planned_epochs(math.ceil(n_reviews / settings.batch_size), settings)
    total = steps_per_epoch * epochs
    return total, warmup_steps(total, settings)


def lr_schedule(n_reviews, settings, shown=4):
    """The learning rate of the loop's own scheduler (linear warmup from 0 to `lr`, then linear decay to 0 or constant), built on
    a throwaway optimizer: `shown` steps of the warmup's start, its end, the decay's start, `shown - 1` evenly
    spaced steps of the decay, and the last step."""
    total, warmup = optimizer_steps(n_reviews, settings)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    scheduler = make_scheduler(optimizer, total, settings)
    after = "decay" if settings.lr_schedule == "linear" else "constant"
    lrs = [settings.lr * scheduler.lr_lambdas[0](step) for step in range(total)]  # what get_last_lr gives at each step
    picked = set(range(1, shown + 1)) | set(range(warmup - 1, warmup + 3)) | {total}
    picked |= {warmup + 1 + round(k * (total - warmup - 1) / shown) for k in range(1, shown)}
    steps = sorted(step for step in picked if 1 <= step <= total)
    return pd.DataFrame({"lr": [lrs[s - 1] for s in steps],
                         "share of lr": [round(lrs[s - 1] / settings.lr, 4) for s in steps],
                         "phase": ["warmup" if s <= warmup else "peak" if s == warmup + 1 else after for s in steps]},
                        index=pd.Index(steps, name="optimizer step"))


def batch_loss(model, batch):
    """The model's cross-entropy on one batch (evaluation mode), beside ln 2: the loss of a 50/50 guess."""
    logits = batch_logits(model, batch)
    return pd.Series({"cross-entropy": classification_loss(logits, batch).item(),
                      "ln 2 (a 50/50 guess)": math.log(2),
                      "mean P(positive)": positive_probability(logits.numpy()).mean().item(),
                      "accuracy on this batch": (logits.argmax(-1) == batch["labels"]).float().mean().item()}, name="batch")


def head_text(params):
    """The classification head this run's teacher gets."""
    if params.head == "cls":
        return ("**This run's head** (`head: cls`): the classifier reads the `[CLS]` state itself, through a fresh "
                "dense layer and GELU, then a linear layer to the 2 labels; BERT's tanh pooler is not used "
                "(docs/recipe.md says why). transformers saves this model as `ElectraForSequenceClassification`, "
                "whose encoder is BERT's layer for layer, so `pipeline()` and `AutoModel` load it as they are.")
    return ("**This run's head** (`head: pooler`, BERT's own): the `[CLS]` state goes through BERT's pre-trained "
            "pooler (a dense layer and tanh), then a new linear layer to the 2 labels.")
