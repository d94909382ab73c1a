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

from helpers.devices import plain_model
from helpers.evaluation import classification_metrics, positive_probability, predict_logits, predict_on_device
from helpers.io import dir_size_mb
from helpers.models import count_parameters
from helpers.precision import quantization_engine

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
    logits = predict_on_device(teacher, dataset, tokenizer, settings, desc="teacher logits")
    return dataset.add_column(TEACHER_LOGITS, logits.tolist())


def quantize_int8(model):
    """A CPU copy of `model` whose linear layers hold int8 weights, activations quantized on the fly.

    Dynamic quantization needs no calibration data: it is the cheap way to a faster CPU model.
    It runs on the platform's quantized engine (helpers.precision). The copy is made of the plain
    fp32 model (`plain_model`), never of one still wrapped in a loop's bf16/fp16 autocast. torch
    2.13 warns that its quantized tensor types will move out of torch (to torchao); the warning is
    silenced here and noted in the README, since the pinned torch runs it fine.
    """
    torch.backends.quantized.engine = quantization_engine()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(plain_model(model)).to("cpu").eval(),
                                                      {torch.nn.Linear}, dtype=torch.qint8)


def timed_cpu_logits(model, dataset, tokenizer, batch_size):
    """The logits of `model` predicting `dataset` on the CPU, and the seconds that took.

    The same path as every prediction (length-sorted batches in inference mode), in the
    model's own precision: fp32, or int8 for a quantized one.
    """
    model = plain_model(model).to("cpu")
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


def cpu_samples(n_test, n_sample, n_speed, seed):
    """Positions of the test reviews scored on the CPU (at most `n_sample`, all when fewer or None)
    and of those timed (the first `n_speed` of the same seeded draw): the timed reviews are part of
    the scored ones, so every CPU figure rests on the same reviews. Both sorted."""
    drawn = np.random.default_rng(seed).permutation(n_test)[:n_sample or n_test]
    return np.sort(drawn), np.sort(drawn[:n_speed])


def compare(trained, test, tokenizer, params):
    """Size, CPU speed and test scores of the teacher, the student and the student quantized to int8.

    `trained` maps "teacher" and "student" to (model, saved folder, P(positive) for every test
    review). The int8 student runs on the CPU, so it is scored on a seeded sample of the test split
    (`n_cpu_test` reviews; all when fewer); the teacher and student are scored on the whole split
    and on the same sample, so a ratio between two rows always compares the same reviews. Speed is
    timed for each model on the same `n_speed` reviews of that sample.
    """
    labels = np.asarray(test["labels"])
    sample, timed = cpu_samples(len(test), params.n_cpu_test, params.n_speed, params.seed)
    int8 = quantize_int8(trained["student"][0])
    int8_logits, _ = timed_cpu_logits(int8, test.select(sample), tokenizer, params.eval_batch_size)
    int8_probs = np.full(len(test), np.nan)
    int8_probs[sample] = positive_probability(int8_logits)
    rows = {name: (model, dir_size_mb(folder), probs, count_parameters(model))
            for name, (model, folder, probs) in trained.items()}
    rows["student_int8"] = (int8, serialized_mb(int8), int8_probs, count_parameters(trained["student"][0]))
    timed_set = test.select(timed)
    models = {}
    for name, (model, size_mb, probs, n_params) in rows.items():
        speed = cpu_throughput(model, timed_set, tokenizer, params.eval_batch_size)
        models[name] = {"params": n_params, "size_mb": round(size_mb, 2), "reviews_per_s": round(speed, 2),
                        "test": _scores(labels, probs), "cpu_sample": _scores(labels[sample], probs[sample])}
    return {"reviews": {"test": len(test), "cpu_sample": len(sample), "timed": len(timed)}, "models": models}


def _scores(labels, probs):
    """Accuracy and F1, or None where the model was not scored on all of these reviews."""
    if np.isnan(probs).any():
        return None
    metrics = classification_metrics(labels, probs)
    return {"accuracy": metrics["accuracy"], "f1": metrics["f1"]}


def comparison_table(comparison):
    """Teacher, student and int8 student in readable units, with each one's share of the teacher's figures.

    Column names say which reviews each figure rests on; where the CPU sample is the whole test
    split, one pair of accuracy/F1 columns serves all three models.
    """
    reviews = comparison["reviews"]
    columns = {"params": "params (M)", "size_mb": "size (MB)",
               "reviews_per_s": f"reviews/s (CPU, {reviews['timed']:,} reviews)"}
    scored_on = {"cpu_sample": ""} if reviews["cpu_sample"] == reviews["test"] else \
        {"test": f" (all {reviews['test']:,} test)", "cpu_sample": f" (CPU sample of {reviews['cpu_sample']:,})"}
    rows = {}
    for name, row in comparison["models"].items():
        rows[name] = {label: row[key] for key, label in columns.items()}
        for where, suffix in scored_on.items():
            for metric in ("accuracy", "f1"):
                rows[name][metric + suffix] = (row[where] or {}).get(metric, np.nan)
    table = pd.DataFrame(rows).T.astype(float)
    table["params (M)"] /= 1e6
    for name in [n for n in comparison["models"] if n != "teacher"]:
        table.loc[f"{name} / teacher"] = table.loc[name] / table.loc["teacher"]
    return table.round(3)
