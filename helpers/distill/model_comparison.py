"""05's comparison: the student's CPU copies (torch int8; ONNX Runtime's from helpers.serve.export) and every
model side by side: size, warm CPU speed, accuracy with intervals and paired differences on the same reviews.
CPU figures rest on a seeded sample of each test set (`cpu_samples`) holding the timed reviews.
"""
import io
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from helpers.core.files import dir_size_mb, read_json
from helpers.core.int8 import quantize_int8
from helpers.core.models import count_parameters
from helpers.core.sentiment import positive_probability
from helpers.core.timing import warmed_timing
from helpers.evaluate.metrics import classification_metrics, sets_table
from helpers.evaluate.paired import paired_comparisons
from helpers.evaluate.scored_sets import cpu_samples
from helpers.serve import export, onnx_backend
from helpers.train.prediction import cpu_logits, timed_cpu_logits, warm_up_batch


def cpu_throughput(model, dataset, tokenizer, batch_size):
    """Reviews per second of `model` predicting on the CPU (after a warm-up batch: `timed_cpu_logits`)."""
    return len(dataset) / timed_cpu_logits(model, dataset, tokenizer, batch_size)[1]


def serialized_mb(model):
    """Megabytes of the model's weights as saved (for a quantized model, which safetensors cannot hold)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def compare(trained, sets, probs, tokenizer, params, baseline_footprint, onnx_dir=None):
    """Size, CPU speed and scores of the baseline, teacher, student and the student's CPU copies (`cpu_copies`).

    `trained`: {"teacher"/"student": (model, saved folder)}; `sets`: {test set: tokenized reviews}, the run's
    test split first; `probs`: {set: {model: P(positive)}}; `baseline_footprint`: evaluate/baseline.json's row.
    Copies are scored on each set's CPU sample (or its timed reviews), the others on the whole set; every model
    is timed on the same `n_speed` reviews, in batches of `eval_batch_size`, on torch's CPU threads.
    """
    copies = cpu_copies(trained["student"][0], tokenizer, params.eval_batch_size, onnx_dir)
    main_name = next(iter(sets))
    _, timed = cpu_samples(len(sets[main_name]), params.n_cpu_test, params.n_speed, params.seed)
    timed_set = sets[main_name].select(timed)
    footprints = {"baseline": tuple(baseline_footprint[key] for key in ("params", "size_mb", "reviews_per_s"))}
    for name, (model, saved) in trained.items():
        footprints[name] = (count_parameters(model), dir_size_mb(saved),
                            cpu_throughput(model, timed_set, tokenizer, params.eval_batch_size))
    everyone = {name: dict(by_model) for name, by_model in probs.items()}
    for name, (logits_of, size_mb, scope) in copies.items():
        scored, seconds = _copy_probabilities(logits_of, scope, sets, params)
        for set_name, copy_probs in scored.items():
            everyone[set_name][name] = copy_probs
        footprints[name] = (count_parameters(trained["student"][0]), size_mb, len(timed) / seconds)
    scored = {name: _score_set(ds, everyone[name], params) for name, ds in sets.items()}
    models = {name: {"params": n_params, "size_mb": round(size_mb, 2), "reviews_per_s": round(speed, 2),
                     **scored[main_name]["models"][name]} for name, (n_params, size_mb, speed) in footprints.items()}
    return {"reviews": scored[main_name]["reviews"], "paired": scored[main_name]["paired"],
            "cpu": {"batch_size": params.eval_batch_size, "threads": torch.get_num_threads()}, "models": models,
            "extra_test_sets": {name: result for name, result in scored.items() if name != main_name}}


def cpu_copies(student, tokenizer, batch_size, onnx_dir=None):
    """{row: (tokenized reviews -> logits, MB, "cpu_sample" or "timed": the reviews it scores)} of the student's CPU
    copies: torch int8 and, from `onnx_dir`, ONNX Runtime's optimized fp32 (the student's own logits: its timed
    reviews only) and int8, on as many threads as torch uses."""
    int8 = quantize_int8(student)
    copies = {"student_int8": (partial(cpu_logits, int8, tokenizer=tokenizer, batch_size=batch_size),
                               serialized_mb(int8), "cpu_sample")}
    if onnx_dir is None:
        return copies
    files = read_json(Path(onnx_dir) / export.COPIES_FILE)["files"]
    for name, key, scope in (("student_onnx", "optimized", "timed"), ("student_onnx_int8", "int8", "cpu_sample")):
        path = Path(onnx_dir) / files[key]
        session = onnx_backend.make_session(path, torch.get_num_threads())
        copies[name] = (lambda dataset, session=session: onnx_backend.session_logits(
            session, dataset["input_ids"], tokenizer.pad_token_id, batch_size), path.stat().st_size / 1e6, scope)
    return copies


def _copy_probabilities(logits_of, scope, sets, params):
    """A CPU copy's P(positive) on its `scope` of each set (NaN elsewhere) and its seconds on the timed reviews, warm."""
    main_name, probs, seconds = next(iter(sets)), {}, None
    for name, dataset in sets.items():
        sample, timed = cpu_samples(len(dataset), params.n_cpu_test, params.n_speed, params.seed)
        rows = sample if scope == "cpu_sample" else timed
        probs[name] = np.full(len(dataset), np.nan)
        if name == main_name:  # its timed reviews are scored by the timed pass
            timed_set = dataset.select(timed)
            logits, seconds = warmed_timing(logits_of, timed_set, warm_up_batch(timed_set, params.eval_batch_size))
            probs[name][timed] = positive_probability(logits)
            rows = np.setdiff1d(rows, timed)
        if len(rows):
            probs[name][rows] = positive_probability(logits_of(dataset.select(rows)))
    return probs, seconds


def _score_set(dataset, probs, params):
    """One test set's scores of every model (NaN where it did not score) on the whole set, the CPU sample and the
    timed reviews (None where a model missed some of them), and the paired differences."""
    labels = np.asarray(dataset["labels"])
    sample, timed = cpu_samples(len(dataset), params.n_cpu_test, params.n_speed, params.seed)
    return {"reviews": {"test": len(dataset), "cpu_sample": len(sample), "timed": len(timed)},
            "models": {name: {"test": _scores(labels, p), "cpu_sample": _scores(labels[sample], p[sample]),
                              "timed": _scores(labels[timed], p[timed])} for name, p in probs.items()},
            "paired": paired_comparisons(labels, probs)}


def _scores(labels, probs):
    """Accuracy (with its 95% interval) and F1, or None where the model was not scored on all of these reviews."""
    if np.isnan(probs).any():
        return None
    metrics = classification_metrics(labels, probs)
    return {"accuracy": metrics["accuracy"], "accuracy_ci95": metrics["accuracy_ci95"], "f1": metrics["f1"]}


def comparison_table(comparison):
    """Every model in readable units; rows "/ teacher" its share of the teacher's, rows "a - b" the paired
    differences (accuracy difference, paired interval, McNemar p). Column names say the reviews each rests on."""
    reviews, cpu = comparison["reviews"], comparison.get("cpu")
    setting = f", batch {cpu['batch_size']}, {cpu['threads']} threads" if cpu else ""
    columns = {"params": "params (M)", "size_mb": "size (MB)",
               "reviews_per_s": f"reviews/s (CPU, {reviews['timed']:,} reviews{setting})"}
    scored_on = {"cpu_sample": f" ({reviews['test']:,} test)"} if reviews["cpu_sample"] == reviews["test"] else \
        {"test": f" (all {reviews['test']:,} test)", "cpu_sample": f" (CPU sample of {reviews['cpu_sample']:,})"}
    if any(row.get("timed") and not row["cpu_sample"] for row in comparison["models"].values()):
        scored_on["timed"] = f" (timed {reviews['timed']:,})"  # a copy scored on the timed reviews only
    rows, intervals = {}, []
    for name, row in comparison["models"].items():
        rows[name] = {label: row[key] for key, label in columns.items()}
        for where, suffix in scored_on.items():
            scores = row.get(where) or {}
            low, high = scores.get("accuracy_ci95", (np.nan, np.nan))
            rows[name].update({"accuracy" + suffix: scores.get("accuracy", np.nan), "95% low" + suffix: low,
                               "95% high" + suffix: high, "f1" + suffix: scores.get("f1", np.nan)})
            intervals += ["95% low" + suffix, "95% high" + suffix]
    table = pd.DataFrame(rows).T.astype(float)
    table["params (M)"] /= 1e6
    for name in [n for n in comparison["models"] if n != "teacher"]:
        table.loc[f"{name} / teacher"] = table.loc[name] / table.loc["teacher"]
        table.loc[f"{name} / teacher", sorted(set(intervals))] = np.nan  # a ratio of interval ends means nothing
    if comparison.get("paired"):
        table["McNemar p"] = np.nan
    for pair, stats in comparison.get("paired", {}).items():
        suffix = next((scored_on[where] for where in scored_on if reviews[where] == stats["n"]), None)
        if suffix is not None:  # else on reviews no column of the table holds
            table.loc[pair, ["accuracy" + suffix, "95% low" + suffix, "95% high" + suffix, "McNemar p"]] = [
                stats["difference"], *stats["ci95"], stats["p_mcnemar"]]
    return table.round(3)


def extra_sets_table(comparison):
    """`sets_table` of every model on each extra set: on the whole set, or the CPU sample where a copy read only that."""
    scores = {}
    for name, result in comparison.get("extra_test_sets", {}).items():
        scores[name] = {}
        for model, by_reviews in result["models"].items():
            where = next(key for key in ("test", "cpu_sample", "timed") if by_reviews.get(key))  # the most reviews read
            scores[name][model] = {**by_reviews[where], "n": result["reviews"][where]}
    return sets_table(scores)
