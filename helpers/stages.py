"""The five stages, one function each: read the previous stage's files, work, write, report.

Each notebook calls its stage function and displays what it returns; the batch runner runs
the notebooks, so a stage behaves the same stepped through in Colab or run by papermill.
"""
import time
from dataclasses import dataclass, field

import datasets
import pandas as pd
from accelerate import PartialState

from helpers import data, distill, evaluation, layout, models, plots, tokens
from helpers.io import read_json, write_frame, write_json
from helpers.progress import quiet_library_bars
from helpers.training import TrainSettings, train

quiet_library_bars()


@dataclass
class StageResult:
    tables: dict = field(default_factory=dict)  # name -> pandas DataFrame to show
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure, also saved as PNG
    values: dict = field(default_factory=dict)  # name -> plain figures (metrics, seconds)


def _finish(run, stage, result, started):
    result.values["seconds"] = round(time.perf_counter() - started, 1)
    if is_main_process():
        for name, fig in result.figures.items():
            plots.save(fig, run.stage(stage) / f"{name}.png")
    return result


def is_main_process():
    """False in every process but the first of a multi-process launch: only the first writes files."""
    return PartialState().is_main_process


def data_stage(run):
    started = time.perf_counter()
    splits = data.make_splits(run.params)
    data.save_splits(splits, run.stage("data"))
    summary = data.split_summary(splits)
    write_json(run.stage("data") / "summary.json", summary.reset_index().to_dict("records"))
    words = {name: frame["text"].str.split().str.len().to_numpy() for name, frame in splits.items()}
    result = StageResult(
        tables={"summary": summary, "examples": splits["train"].head(5)},
        figures={"label_balance": plots.label_balance(summary), "review_words": plots.length_histogram(words, "words")})
    return _finish(run, "data", result, started)


def tokenize_stage(run):
    started = time.perf_counter()
    params = run.params
    splits = data.load_splits(run.require("data"))
    tokenizer = tokens.prepare_tokenizer(params, splits["train"]["text"].tolist())
    tokenized = tokens.tokenize_splits(splits, tokenizer, params.max_length, params.truncation_head)
    tokens.save_tokenized(tokenized, tokenizer, run.stage("tokenized"))
    stats = tokens.length_stats(tokenized, params.max_length)
    write_json(run.stage("tokenized") / "length_stats.json", stats.reset_index().to_dict("records"))
    lengths = {name: ds["full_length"] for name, ds in tokenized.items()}
    result = StageResult(
        tables={"length_stats": stats},
        figures={"token_lengths": plots.length_histogram(lengths, "tokens", cutoff=params.max_length)},
        values={"tokenizer": type(tokenizer).__name__, "vocab_size": len(tokenizer)})
    return _finish(run, "tokenized", result, started)


def train_stage(run):
    started = time.perf_counter()
    params = run.params
    tokenized = tokens.load_tokenized(run.require("tokenized"))
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenized"))
    model = models.load_teacher(params.model, tokenizer, params.seed, params.attention_dropout)
    history = train(model, tokenized, tokenizer, TrainSettings.from_params(params), run.stage("train"))
    return _finish(run, "train", _train_result(run, history, models.count_parameters(model)), started)


def launch_train(run, num_processes=None):
    """The train stage from a notebook: on all of the machine's GPUs when it has several
    (Accelerate's notebook_launcher forks one process per GPU), else in this process."""
    import torch

    num_processes = num_processes or torch.cuda.device_count()
    if num_processes <= 1:
        return train_stage(run)
    from accelerate import notebook_launcher

    started = time.perf_counter()
    notebook_launcher(train_stage, args=(run,), num_processes=num_processes)
    # the processes' results stay in them: rebuild this one's from what the first process wrote
    history = read_json(run.require("train", "history.json"))
    n_parameters = models.count_parameters(models.load_trained(run.require("train", "model")))
    result = _train_result(run, history, n_parameters)  # its figure is saved already, by the first process
    result.values["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _train_result(run, history, n_parameters):
    return StageResult(
        tables={"epochs": _epochs_table(history)},
        figures={"loss_curve": plots.loss_curve(history, f"Fine-tuning {run.params.model}")},
        values={"parameters": n_parameters, "precision": history["precision"],
                "precision_reason": history.get("precision_reason", "")})


def evaluate_stage(run):
    started = time.perf_counter()
    params = run.params
    model_dir = run.require("train", "model")
    model, tokenizer = models.load_trained(model_dir), tokens.load_saved_tokenizer(run.require("tokenized"))
    test = tokens.load_tokenized(run.require("tokenized"))["test"]
    prob_positive = evaluation.predict_proba(model, test, tokenizer, TrainSettings.from_params(params))
    if not is_main_process():  # every process predicted its share; the first one has them all and reports
        return StageResult()
    frame = data.load_splits(run.require("data"), names=("test",))["test"]
    metrics = evaluation.classification_metrics(frame["label"].to_numpy(), prob_positive)
    predictions = evaluation.prediction_table(frame, prob_positive)
    write_frame(run.stage("eval") / "predictions.parquet", predictions, index=False)
    matrix = evaluation.confusion(frame["label"].to_numpy(), prob_positive)
    errors = evaluation.confident_errors(predictions, params.n_errors)
    write_frame(run.stage("eval") / "confident_errors.csv", errors)
    write_json(run.stage("eval") / "metrics.json", metrics)  # last: it marks the stage done (helpers.layout)
    result = StageResult(
        tables={"metrics": _metrics_table(metrics), "confusion": matrix, "confident_errors": errors},
        figures={"confusion_matrix": plots.confusion_figure(matrix)}, values={"metrics": metrics})
    return _finish(run, "eval", result, started)


def distill_stage(run):
    started = time.perf_counter()
    params = run.params
    teacher_dir = run.require("train", "model")
    teacher_probs = pd.read_parquet(run.require("eval", "predictions.parquet"))["prob_positive"].to_numpy()
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenized"))
    tokenized = tokens.load_tokenized(run.require("tokenized"))
    settings = TrainSettings.from_params(params, student=True)
    teacher = models.load_trained(teacher_dir)
    train_split = distill.add_teacher_logits(teacher, tokenized["train"], tokenizer, settings)
    student = models.load_student(params.student_model, teacher, params.seed, params.attention_dropout)
    history = train(student, datasets.DatasetDict(train=train_split, val=tokenized["val"]), tokenizer, settings,
                    run.stage("distill"), loss_fn=distill.make_distillation_loss(params),
                    extra_columns=(distill.TEACHER_LOGITS,))
    student_dir = run.stage("distill") / "model"
    student = models.load_trained(student_dir)
    student_probs = evaluation.predict_proba(student, tokenized["test"], tokenizer, settings)
    if not is_main_process():  # the CPU timings and the files are the first process's work
        return StageResult()
    student_metrics = evaluation.classification_metrics(tokenized["test"]["labels"], student_probs)
    write_json(run.stage("distill") / "metrics.json", student_metrics)
    comparison = distill.compare({"teacher": (teacher, teacher_dir, teacher_probs),
                                  "student": (student, student_dir, student_probs)},
                                 tokenized["test"], tokenizer, params)
    write_json(run.stage("distill") / "comparison.json", comparison)
    result = StageResult(
        tables={"epochs": _epochs_table(history), "comparison": distill.comparison_table(comparison)},
        figures={"student_loss_curve": plots.loss_curve(history, "Distilling the student")},
        values={"comparison": comparison, "student_metrics": student_metrics})
    return _finish(run, "distill", result, started)


def _epochs_table(history):
    return pd.DataFrame(history["epochs"]).set_index("epoch").round(4)


def _metrics_table(metrics):
    return pd.Series(metrics, name="test").to_frame().round(4)


STAGE_FUNCTIONS = {"data": data_stage, "tokenize": tokenize_stage, "train": train_stage, "evaluate": evaluate_stage,
                   "distill": distill_stage}


def stages_to_run_before(run, stage):
    """The stages before `stage` that must run first: from the first whose output is missing on."""
    earlier = list(STAGE_FUNCTIONS)[:list(STAGE_FUNCTIONS).index(stage)]
    missing = [name for name in earlier if not (run.dir / layout.DONE_MARKERS[name]).exists()]
    return earlier[earlier.index(missing[0]):] if missing else []


def run_missing_before(run, stage):
    """Run, in this process, the earlier stages whose output this run folder lacks (see helpers.notebook)."""
    for name in stages_to_run_before(run, stage):
        print(f"{run.dir} has no {layout.DONE_MARKERS[name]}: running the {name} stage here first "
              "(it has not run in this folder, or ran on another machine whose files are gone)", flush=True)
        STAGE_FUNCTIONS[name](run)
# no model work to share: in a multi-process launch the first process runs these and the others wait
MAIN_PROCESS_STAGES = ("data", "tokenize")
