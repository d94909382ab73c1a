"""Stage 5: distil the fine-tuned teacher into a DistilBERT student and compare the two.

The student trains through the same loop as the teacher (helpers.training); only the loss
changes, to Hinton et al.'s (2015): the KL divergence between the teacher's and the student's
softened predictions at temperature T, scaled by T**2 so its gradients keep their size as T
changes, mixed with the ordinary cross-entropy on the true labels:

    loss = alpha * CE(student, labels) + (1 - alpha) * T**2 * KL(teacher_T || student_T)

The teacher's logits are computed once, up front, and travel with each training batch.
"""
import time
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from helpers.io import dir_size_mb
from helpers.models import count_parameters
from helpers.training import make_accelerator, make_loader, predict_logits

TEACHER_LOGITS = "teacher_logits"


def distillation_loss(logits, batch, temperature, alpha):
    soft_student = F.log_softmax(logits / temperature, dim=-1)
    soft_teacher = F.log_softmax(batch[TEACHER_LOGITS].float() / temperature, dim=-1)
    kl = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    return alpha * F.cross_entropy(logits, batch["labels"]) + (1 - alpha) * temperature**2 * kl


def make_distillation_loss(params):
    return partial(distillation_loss, temperature=params.temperature, alpha=params.alpha)


def add_teacher_logits(teacher, dataset, tokenizer, settings):
    """The dataset with the teacher's logits for each review as an extra column."""
    accelerator = make_accelerator(settings)
    logits = predict_logits(accelerator.prepare(teacher), dataset, tokenizer, settings.eval_batch_size, accelerator,
                            desc="teacher logits")
    return dataset.add_column(TEACHER_LOGITS, logits.tolist())


def cpu_throughput(model, dataset, tokenizer, batch_size, repeats=1):
    """Reviews per second of `model` predicting on the CPU in fp32 (best of `repeats` passes)."""
    model = model.to("cpu").eval()
    loader = make_loader(dataset, tokenizer, batch_size)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in loader:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            best = min(best, time.perf_counter() - start)
    return len(dataset) / best


def comparison_row(model, model_dir, metrics, reviews_per_s):
    return {"params": count_parameters(model), "size_mb": round(dir_size_mb(model_dir), 2),
            "reviews_per_s": round(reviews_per_s, 2), "accuracy": metrics["accuracy"], "f1": metrics["f1"]}


def comparison_table(comparison):
    """Teacher beside student in readable units, with the student's share of each teacher figure."""
    table = pd.DataFrame(comparison).T.astype(float)
    table["params"] /= 1e6
    table.loc["student / teacher"] = table.loc["student"] / table.loc["teacher"]
    table = table.rename(columns={"params": "params (M)", "size_mb": "size (MB)", "reviews_per_s": "reviews/s (CPU)"})
    return table.round(3)


def speed_sample(dataset, n, seed):
    """A fixed random subset of `n` reviews for timing (the same one for every model)."""
    rng = np.random.default_rng(seed)
    return dataset.select(sorted(rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)))
