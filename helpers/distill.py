"""Stage 5: distil the fine-tuned teacher into a DistilBERT student and compare the two.

The student trains through the same loop as the teacher (helpers.training); only the loss
changes, to Hinton et al.'s (2015): the KL divergence between the teacher's and the student's
softened predictions at temperature T, scaled by T**2 so its gradients keep their size as T
changes, mixed with the ordinary cross-entropy on the true labels:

    loss = alpha * CE(student, labels) + (1 - alpha) * T**2 * KL(teacher_T || student_T)

The teacher's logits are computed once, up front, and travel with each training batch.
"""
import copy
import io
import time
import warnings
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from helpers.evaluation import classification_metrics, positive_probability
from helpers.io import dir_size_mb
from helpers.models import count_parameters
from helpers.training import make_accelerator, predict_logits

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


def quantize_int8(model):
    """A CPU copy of `model` whose linear layers hold int8 weights, activations quantized on the fly.

    Dynamic quantization needs no calibration data: it is the cheap way to a faster CPU model.
    torch 2.13 warns that its quantized tensor types will move out of torch (to torchao); the
    warning is silenced here and noted in the README, since the pinned torch runs it fine.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).to("cpu").eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def timed_cpu_logits(model, dataset, tokenizer, batch_size):
    """The logits of `model` predicting `dataset` on the CPU, and the seconds that took.

    The same path as every prediction (length-sorted batches in inference mode), in the
    model's own precision: fp32, or int8 for a quantized one.
    """
    model = model.to("cpu")
    started = time.perf_counter()
    logits = predict_logits(model, dataset, tokenizer, batch_size, desc="timing on the CPU")
    return logits, time.perf_counter() - started


def cpu_throughput(model, dataset, tokenizer, batch_size):
    """Reviews per second of `model` predicting on the CPU."""
    return len(dataset) / timed_cpu_logits(model, dataset, tokenizer, batch_size)[1]


def serialized_mb(model):
    """Megabytes of the model's weights as saved (for a quantized model, which safetensors cannot hold)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def compare(trained, test, tokenizer, params):
    """Size, CPU speed and test scores of the teacher, the student and the student quantized to int8.

    `trained` maps "teacher" and "student" to (model, saved folder, test metrics). The int8
    student is scored here, on the CPU, on the whole test split; speed is timed for each model
    on the same `n_speed` test reviews.
    """
    rows = {name: (model, dir_size_mb(folder), metrics, count_parameters(model))
            for name, (model, folder, metrics) in trained.items()}
    student = trained["student"][0]
    int8 = quantize_int8(student)
    logits, _ = timed_cpu_logits(int8, test, tokenizer, params.eval_batch_size)
    int8_metrics = classification_metrics(test["labels"], positive_probability(logits))
    rows["student_int8"] = (int8, serialized_mb(int8), int8_metrics, count_parameters(student))
    speed_set = speed_sample(test, params.n_speed, params.seed)
    return {name: comparison_row(n_params, size, metrics,
                                 cpu_throughput(model, speed_set, tokenizer, params.eval_batch_size))
            for name, (model, size, metrics, n_params) in rows.items()}


def comparison_row(n_params, size_mb, metrics, reviews_per_s):
    return {"params": n_params, "size_mb": round(size_mb, 2), "reviews_per_s": round(reviews_per_s, 2),
            "accuracy": metrics["accuracy"], "f1": metrics["f1"]}


def comparison_table(comparison):
    """Teacher, student and int8 student in readable units, with each one's share of the teacher's figures."""
    table = pd.DataFrame(comparison).T.astype(float)
    table["params"] /= 1e6
    for name in [n for n in comparison if n != "teacher"]:
        table.loc[f"{name} / teacher"] = table.loc[name] / table.loc["teacher"]
    table = table.rename(columns={"params": "params (M)", "size_mb": "size (MB)", "reviews_per_s": "reviews/s (CPU)"})
    return table.round(3)


def speed_sample(dataset, n, seed):
    """A fixed random subset of `n` reviews for timing (the same one for every model)."""
    rng = np.random.default_rng(seed)
    return dataset.select(sorted(rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)))
