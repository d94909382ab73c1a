"""What AdamW optimizes and for how long, for the trainer, the notebooks' tables and the time estimates alike."""
import math

from transformers import get_scheduler

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")


def planned_epochs(n_batches, settings):
    """(optimizer steps per epoch, epochs): settings.epochs, or more when that many would stay under
    settings.min_steps, which small training sets need to leave chance at all."""
    steps_per_epoch = math.ceil(n_batches / settings.grad_accum_steps)
    return steps_per_epoch, max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))


def warmup_steps(total, settings):
    """Optimizer steps, of `total`, over which the learning rate rises from 0 to its peak."""
    return round(settings.warmup_ratio * total)


def make_scheduler(optimizer, total, settings):
    """The learning-rate schedule: linear warmup, then linear decay to 0 or a constant rate (settings.lr_schedule)."""
    name = {"linear": "linear", "constant": "constant_with_warmup"}[settings.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps(total, settings), num_training_steps=total)


def param_groups(model, weight_decay, lr, layer_decay=1.0):
    """AdamW's parameter groups: no weight decay on biases and LayerNorm weights; with `layer_decay` < 1 a learning
    rate that shrinks by that factor per layer below the head (Howard and Ruder 2018; Clark et al. 2020): the lower
    layers hold general features that a small training set should change least."""
    n_layers = model.config.num_hidden_layers
    groups = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            group_lr = lr * layer_decay ** (n_layers + 1 - layer_depth(name, n_layers))
            decay = 0.0 if name.endswith(NO_DECAY) else weight_decay
            groups.setdefault((group_lr, decay), {"params": [], "weight_decay": decay, "lr": group_lr})["params"].append(param)
    return [groups[key] for key in sorted(groups, reverse=True)]  # the head's rate first, with decay before without


def layer_depth(name, n_layers):
    """0 for the embeddings, i + 1 for encoder layer i, n_layers + 1 for the rest (pooler and head)."""
    words = name.split(".")
    if "embeddings" in words:
        return 0
    if "layer" in words and words[words.index("layer") + 1].isdigit():
        return int(words[words.index("layer") + 1]) + 1
    return n_layers + 1
