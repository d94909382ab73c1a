"""The five stages, one function each (read the previous stage's files, work, write, report), which the
notebooks call, so a stage behaves the same stepped through in Colab or run by papermill.
"""
import time
from dataclasses import dataclass, field

import datasets
import pandas as pd

from helpers.core import models, sentiment
from helpers.core.accelerators import is_main_process, make_accelerator
from helpers.core.files import read_json, write_frame, write_json
from helpers.core.progress import quiet_library_bars
from helpers.data import extra_sets, imdb, unlabelled
from helpers.distill import distillation, model_comparison
from helpers.evaluate import baseline, calibration, metrics, paired, plots, scored_sets
from helpers.pipeline import estimates
from helpers.runs import layout
from helpers.runs.run_folder import stages_from_first_missing
from helpers.serve import export
from helpers.tokens import tokens
from helpers.train import prediction
from helpers.train.stepper import skipped_note
from helpers.train.trainer import TrainSettings, train

quiet_library_bars()


@dataclass
class StageResult:
    tables: dict = field(default_factory=dict)  # name -> pandas DataFrame to show
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure, also saved as PNG
    values: dict = field(default_factory=dict)  # name -> plain figures (metrics, seconds)


def _finish(run, result, started):
    result.values["seconds"] = round(time.perf_counter() - started, 1)
    if is_main_process():
        for name, fig in result.figures.items():
            plots.save(fig, run.dir / layout.FIGURES[name])
    return result


def data_stage(run):
    started = time.perf_counter()
    splits, dropped = imdb.without_duplicates(imdb.draw_splits(run.params))
    imdb.save_splits(splits, run.stage("data"))
    summary = imdb.split_summary(splits, dropped)
    records = summary.reset_index().to_dict("records")
    if run.params.n_unlabelled != 0:  # for the distill stage, drawn here so that it is fixed with the splits
        sentences = [text for frame in extra_sets.load_extra_tests(run.params.extra_test).values() for text in frame["text"]]
        labelled = [text for frame in splits.values() for text in frame["text"]]
        drawn, dropped["unlabelled"] = unlabelled.draw_unlabelled(run.params.unlabelled, run.params.n_unlabelled,
                                                                  run.params.seed, labelled, sentences)
        write_frame(run.dir / layout.UNLABELLED_REVIEWS, drawn, index=False)
        records.append({"split": "unlabelled", "reviews": len(drawn), **{f"dropped_{k}": n for k, n in dropped["unlabelled"].items()}})
    write_json(run.dir / layout.SPLITS_SUMMARY, records)
    words = {name: frame["text"].str.split().str.len().to_numpy() for name, frame in splits.items()}
    result = StageResult(
        tables={"summary": summary, "duplicates_dropped": pd.DataFrame(dropped).T.rename_axis("split"),
                "examples": splits["train"].head(5)},
        figures={"label_balance": plots.label_balance(summary), "review_words": plots.length_histogram(words, "words")},
        values={"duplicates_dropped": dropped})
    return _finish(run, result, started)


def tokenize_stage(run):
    started = time.perf_counter()
    params = run.params
    splits = imdb.load_splits(run.require("data"))
    tokenizer = tokens.prepare_tokenizer(params, splits["train"]["text"].tolist())
    tokenized = tokens.tokenize_splits(splits, tokenizer, params.max_length, params.truncation_head)
    tokens.save_tokenized(tokenized, tokenizer, run.stage("tokenize"))
    stats = tokens.length_stats(tokenized, params.max_length)
    write_json(run.dir / layout.LENGTH_STATS, stats.reset_index().to_dict("records"))
    lengths = {name: ds["full_length"] for name, ds in tokenized.items()}
    result = StageResult(
        tables={"length_stats": stats},
        figures={"token_lengths": plots.length_histogram(lengths, "tokens", cutoff=params.max_length)},
        values={"tokenizer": type(tokenizer).__name__, "vocab_size": len(tokenizer)})
    return _finish(run, result, started)


def train_stage(run):
    started = time.perf_counter()
    params = run.params
    tokenized = tokens.load_tokenized(run.require("tokenize"))
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    model = models.load_teacher(params.model, tokenizer, params.seed, params.attention_dropout, params.head)
    history = train(model, tokenized, tokenizer, TrainSettings.from_params(params), run.stage("train"))
    return _finish(run, _train_result(run, history, models.count_parameters(model)), started)


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
    history = read_json(run.require(layout.TEACHER_HISTORY))
    n_parameters = models.count_parameters(models.load_trained(run.require(layout.TEACHER_MODEL)))
    result = _train_result(run, history, n_parameters)  # its figure is saved already, by the first process
    result.values["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _train_result(run, history, n_parameters):
    return StageResult(
        tables={"epochs": _epochs_table(history)},
        figures={"loss_curve": plots.loss_curve(history, f"Fine-tuning {run.params.model}")},
        values={"parameters": n_parameters, "precision": history["precision"],
                "precision_reason": history.get("precision_reason", ""), "loss_scaler": skipped_note(history["steps"])})


def evaluate_stage(run):
    """The teacher on the test split and the extra test sets, calibrated, beside the TF-IDF baseline."""
    started = time.perf_counter()
    params, settings = run.params, TrainSettings.from_params(run.params)
    model = models.load_trained(run.require(layout.TEACHER_MODEL))  # raw, as trained: calibration is applied, not saved in it
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    val = tokens.load_tokenized(run.require("tokenize"))["val"]
    frames = scored_sets.test_frames(run)
    sets = scored_sets.tokenized_sets(run, frames, tokenizer)
    raw = prediction.predict_sets(model, {"val": val, **sets}, tokenizer, settings.eval_batch_size,
                                  make_accelerator(settings))
    if not is_main_process():  # every process predicted its share; the first one has them all and reports
        return StageResult()
    fitted = calibration.fit_and_measure(raw["val"], val["labels"], raw[scored_sets.MAIN], frames[scored_sets.MAIN]["label"])
    bag_of_words = scored_sets.fit_run_baseline(run)
    probs = {name: {"baseline": baseline.baseline_proba(bag_of_words, frames[name]["text"]),
                    "teacher": sentiment.positive_probability(raw[name], fitted["temperature"])} for name in sets}
    scores = metrics.score_sets(frames, probs)
    test, prob_positive = frames[scored_sets.MAIN], probs[scored_sets.MAIN]["teacher"]
    predictions = metrics.prediction_table(test, prob_positive)
    write_frame(run.dir / layout.PREDICTIONS, predictions, index=False)
    write_frame(run.dir / layout.PROBABILITIES, scored_sets.probabilities_frame(probs), index=False)
    matrix = metrics.confusion(test["label"].to_numpy(), prob_positive)
    errors = metrics.confident_errors(predictions, params.n_errors)
    write_frame(run.dir / layout.CONFIDENT_ERRORS, errors)
    write_json(run.dir / layout.TEST_SET_SCORES, scores)
    write_json(run.dir / layout.PAIRED,
               {name: paired.paired_comparisons(frames[name]["label"], by_model) for name, by_model in probs.items()})
    write_json(run.dir / layout.BASELINE, {"c": bag_of_words.c, "val_accuracy_by_c": bag_of_words.val_accuracy_by_c,
                                                    "footprint": scored_sets.baseline_footprint(bag_of_words, test["text"], params)})
    write_json(run.dir / layout.TEACHER_CALIBRATION, calibration.as_saved(fitted))
    teacher_metrics = calibration.with_calibration(scores[scored_sets.MAIN]["teacher"], fitted)
    write_json(run.dir / layout.TEACHER_METRICS, teacher_metrics)  # last: it marks the stage done (helpers.runs.layout)
    result = StageResult(
        tables={"metrics": _metrics_table(teacher_metrics), "test_sets": metrics.sets_table(scores), "confusion": matrix,
                "confident_errors": errors},
        figures={"confusion_matrix": plots.confusion_figure(matrix),
                 "reliability": plots.reliability(*fitted["tables"])},
        values={"metrics": teacher_metrics, "calibration": fitted})
    return _finish(run, result, started)


def distill_stage(run):
    """Distil the student from the teacher, calibrate it, and compare every model on every test set."""
    started = time.perf_counter()
    params, settings = run.params, TrainSettings.from_params(run.params, student=True)
    teacher_dir = run.require(layout.TEACHER_MODEL)
    earlier = scored_sets.probabilities_by_set(pd.read_parquet(run.require(layout.PROBABILITIES)))
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    tokenized = tokens.load_tokenized(run.require("tokenize"))
    # raw, as trained (the evaluate stage's temperature stays in its folder): a calibration temperature would
    # soften the soft labels a second time, on top of the distillation temperature
    teacher = models.load_trained(teacher_dir)
    extra = pd.read_parquet(run.require(layout.UNLABELLED_REVIEWS)) if params.n_unlabelled != 0 else None
    accelerator = make_accelerator(settings, run.stage("distill"))  # the teacher's logits, training, the predictions
    train_split = distillation.add_teacher_logits(teacher, distillation.with_unlabelled(tokenized["train"], extra, tokenizer, params),
                                             tokenizer, settings.eval_batch_size, accelerator)
    student = models.load_student(params.student_model, teacher, params.seed, params.attention_dropout)
    history = train(student, datasets.DatasetDict(train=train_split, val=tokenized["val"]), tokenizer, settings,
                    run.stage("distill"), loss_fn=distillation.make_distillation_loss(params),
                    extra_columns=(distillation.TEACHER_LOGITS,), accelerator=accelerator)
    student_dir = run.dir / layout.STUDENT_MODEL
    student = models.load_trained(student_dir)
    frames = scored_sets.test_frames(run)
    sets = scored_sets.tokenized_sets(run, frames, tokenizer)
    val = tokenized["val"]
    raw = prediction.predict_sets(student, {"val": val, **sets}, tokenizer, settings.eval_batch_size, accelerator)
    if not is_main_process():  # the CPU timings and the files are the first process's work
        return StageResult()
    fitted = calibration.fit_and_measure(raw["val"], val["labels"], raw[scored_sets.MAIN], frames[scored_sets.MAIN]["label"])
    probs = {name: {**earlier[name], "student": sentiment.positive_probability(raw[name], fitted["temperature"])}
             for name in sets}
    student_metrics = calibration.with_calibration(metrics.score_sets(frames, probs)[scored_sets.MAIN]["student"], fitted)
    write_json(run.dir / layout.STUDENT_METRICS, student_metrics)
    write_json(run.dir / layout.STUDENT_CALIBRATION, calibration.as_saved(fitted))
    with estimates.measured(run, "distill_cpu"):  # the CPU part, beside its estimate (on Colab: the runtime's CPU)
        onnx_dir = export.student_copies(run)
        baseline_row = read_json(run.require(layout.BASELINE))["footprint"]
        comparison = model_comparison.compare({"teacher": (teacher, teacher_dir), "student": (student, student_dir)},
                                              sets, probs, tokenizer, params, baseline_row, onnx_dir)
    write_json(run.dir / layout.COMPARISON, comparison)
    result = StageResult(
        tables={"epochs": _epochs_table(history), "comparison": model_comparison.comparison_table(comparison),
                "extra_test_sets": model_comparison.extra_sets_table(comparison)},
        figures={"student_loss_curve": plots.loss_curve(history, "Distilling the student")},
        values={"comparison": comparison, "student_metrics": student_metrics,
                "training_reviews": {"labelled": len(tokenized["train"]), "unlabelled": len(train_split) - len(tokenized["train"])}})
    return _finish(run, result, started)


def _epochs_table(history):
    return pd.DataFrame(history["epochs"]).set_index("epoch").round(4)


def _metrics_table(scores):
    low, high = scores["accuracy_ci95"]
    flat = {**{k: v for k, v in scores.items() if k != "accuracy_ci95"}, "accuracy 95% low": low, "accuracy 95% high": high}
    return pd.Series(flat, name="test").to_frame().round(4)


STAGE_FUNCTIONS = {"data": data_stage, "tokenize": tokenize_stage, "train": train_stage, "evaluate": evaluate_stage,
                   "distill": distill_stage}


def stages_to_run_before(run, stage):
    """The stages before `stage` that must run first: from the first whose output is missing on."""
    return stages_from_first_missing(run.dir, list(STAGE_FUNCTIONS)[:list(STAGE_FUNCTIONS).index(stage)])


def run_missing_before(run, stage):
    """Run, in this process, the earlier stages whose output this run folder lacks (see helpers.pipeline.notebook)."""
    for name in stages_to_run_before(run, stage):
        print(f"{run.dir} has no {layout.DONE_MARKERS[name]}: running the {name} stage here first "
              "(it has not run in this folder, or ran on another machine whose files are gone)", flush=True)
        estimates.announce(run, name)
        STAGE_FUNCTIONS[name](run)
# no model work to share: in a multi-process launch the first process runs these and the others wait
MAIN_PROCESS_STAGES = ("data", "tokenize")
