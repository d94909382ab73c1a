import importlib.util

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.core import accelerators, models, sentiment
from helpers.core.int8 import quantize_int8
from helpers.distill import distillation, model_comparison
from helpers.evaluate import metrics, scored_sets
from helpers.train import prediction, trainer

ONNX = importlib.util.find_spec("onnxruntime") is not None  # the export extra adds the ONNX Runtime rows


def _batch(teacher_logits, labels):
    return {"teacher_logits": torch.tensor(teacher_logits), "labels": torch.tensor(labels)}


def test_alpha_one_is_plain_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    batch = _batch([[0.0, 3.0], [1.0, 1.0]], [0, 1])
    loss = distillation.distillation_loss(logits, batch, temperature=4.0, alpha=1.0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["labels"]))


def test_soft_term_vanishes_when_student_matches_teacher():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    loss = distillation.distillation_loss(logits, _batch(logits.tolist(), [0, 1]), temperature=2.0, alpha=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_soft_term_is_kl_at_temperature_times_t_squared():
    student, teacher, t = torch.tensor([[1.0, 0.0]]), [[0.0, 2.0]], 3.0
    p = F.softmax(torch.tensor(teacher) / t, -1)
    q = F.softmax(student / t, -1)
    expected = (p * (p / q).log()).sum() * t**2
    loss = distillation.distillation_loss(student, _batch(teacher, [1]), temperature=t, alpha=0.0)
    torch.testing.assert_close(loss, expected)


def test_an_unlabelled_review_learns_from_the_teacher_alone():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    batch = _batch([[0.0, 3.0], [1.0, -2.0]], [1, -1])  # the second review has no label
    t, alpha = 2.0, 0.7
    hard, soft, labelled = distillation.distillation_terms(logits, batch, t)
    assert labelled.tolist() == [True, False] and hard[1].item() == 0.0
    expected = (alpha * F.cross_entropy(logits[:1], batch["labels"][:1]) + (1 - alpha) * soft[0] + soft[1]) / 2
    torch.testing.assert_close(distillation.distillation_loss(logits, batch, t, alpha), expected)
    only_unlabelled = _batch([[0.0, 3.0]], [-1])  # a batch with no label at all still has a finite loss
    assert torch.isfinite(distillation.distillation_loss(logits[:1], only_unlabelled, t, alpha))


def test_the_students_reviews_are_the_labelled_then_the_unlabelled(tiny_tokenizer):
    import pandas as pd

    from helpers.runs.config import resolve_params

    params = resolve_params("smoke")
    splits = {"train": pd.DataFrame({"text": ["a fine film", "a poor film"], "label": [1, 0]})}
    from helpers.tokens.tokens import tokenize_splits

    train = tokenize_splits(splits, tiny_tokenizer, params.max_length)["train"]
    extra = pd.DataFrame({"text": ["never saw it", "saw it twice, a gem", "meh"], "label": [-1, -1, -1]})
    both = distillation.with_unlabelled(train, extra, tiny_tokenizer, params)
    assert both["labels"] == [1, 0, -1, -1, -1] and len(both) == 5
    assert both[2]["input_ids"] == tiny_tokenizer("never saw it")["input_ids"]
    assert distillation.with_unlabelled(train, None, tiny_tokenizer, params) is train


def test_teacher_logits_travel_with_the_training_reviews(tiny_teacher, tiny_tokenizer):
    from helpers.runs.config import resolve_params
    from helpers.train.batching import make_loader
    from helpers.train.trainer import TrainSettings

    ds = datasets.Dataset.from_dict({"input_ids": [[2, 50, 60, 3], [2, 70, 3]], "attention_mask": [[1] * 4, [1] * 3],
                                     "labels": [1, 0]})
    accelerator = accelerators.make_accelerator(TrainSettings.from_params(resolve_params("smoke")))
    with_logits = distillation.add_teacher_logits(tiny_teacher, ds, tiny_tokenizer, 2, accelerator)
    assert len(with_logits[distillation.TEACHER_LOGITS]) == 2 and len(with_logits[distillation.TEACHER_LOGITS][0]) == 2
    np.testing.assert_allclose(with_logits[distillation.TEACHER_LOGITS], prediction.predict_logits(tiny_teacher, ds, tiny_tokenizer, 2),
                               atol=1e-6)  # the teacher's own logits, raw, in the reviews' order
    batch = next(iter(make_loader(with_logits, tiny_tokenizer, 2, extra_columns=(distillation.TEACHER_LOGITS,))))
    assert batch[distillation.TEACHER_LOGITS].shape == (2, 2)


def _row(params, size_mb, speed, test, sample):
    return {"params": params, "size_mb": size_mb, "reviews_per_s": speed, "test": test, "cpu_sample": sample}


def _scores(accuracy, f1, interval=(0.0, 1.0)):
    return {"accuracy": accuracy, "f1": f1, "accuracy_ci95": list(interval)}


def test_comparison_table_adds_each_models_share_of_the_teacher_and_names_the_sample():
    comparison = {"reviews": {"test": 25000, "cpu_sample": 2000, "timed": 256}, "cpu": {"batch_size": 16, "threads": 2},
                  "models": {
        "teacher": _row(100_000_000, 4.0, 10.0, _scores(0.9, 0.9), _scores(0.92, 0.9)),
        "student": _row(50_000_000, 2.0, 25.0, _scores(0.855, 0.81), _scores(0.874, 0.85)),
        "student_onnx_int8": _row(50_000_000, 1.0, 50.0, None, _scores(0.828, 0.8, (0.811, 0.844)))}}
    table = model_comparison.comparison_table(comparison)
    speed = "reviews/s (CPU, 256 reviews, batch 16, 2 threads)"
    assert table.loc["student / teacher", speed] == 2.5 and table.loc["student_onnx_int8 / teacher", speed] == 5.0
    assert table.loc["teacher", "params (M)"] == 100.0 and table.loc["student / teacher", "params (M)"] == 0.5
    assert table.loc["student / teacher", "accuracy (all 25,000 test)"] == pytest.approx(0.95)
    assert np.isnan(table.loc["student_onnx_int8 / teacher", "accuracy (all 25,000 test)"])  # never scored on them all
    assert table.loc["student_onnx_int8 / teacher", "accuracy (CPU sample of 2,000)"] == pytest.approx(0.9)
    sample = " (CPU sample of 2,000)"  # each accuracy with its interval, and the reviews it rests on in its name
    assert table.loc["student_onnx_int8", ["95% low" + sample, "95% high" + sample]].tolist() == [0.811, 0.844]
    assert np.isnan(table.loc["student_onnx_int8 / teacher", "95% low" + sample])  # a ratio of intervals means nothing


def test_the_comparison_table_shows_each_paired_difference_in_the_columns_of_its_reviews():
    stats = {"difference": -0.01, "ci95": [-0.03, 0.012], "p_mcnemar": 0.4, "only_a_right": 5, "only_b_right": 9}
    comparison = {"reviews": {"test": 25000, "cpu_sample": 2000, "timed": 256},
                  "models": {name: _row(1e6, 1.0, 10.0, _scores(0.9, 0.9), _scores(0.9, 0.9))
                             for name in ("teacher", "student", "student_int8")},
                  "paired": {"student - teacher": {**stats, "n": 25000}, "student_int8 - student": {**stats, "n": 2000}}}
    table = model_comparison.comparison_table(comparison)
    assert table.loc["student - teacher", ["accuracy (all 25,000 test)", "95% low (all 25,000 test)",
                                           "95% high (all 25,000 test)", "McNemar p"]].tolist() == [-0.01, -0.03, 0.012, 0.4]
    assert table.loc["student_int8 - student", "accuracy (CPU sample of 2,000)"] == -0.01
    assert np.isnan(table.loc["student_int8 - student", "accuracy (all 25,000 test)"])
    assert np.isnan(table.loc["teacher", "McNemar p"])


def test_a_sample_that_is_the_whole_split_gives_one_pair_of_score_columns():
    scores = _scores(0.8, 0.8)
    comparison = {"reviews": {"test": 40, "cpu_sample": 40, "timed": 40},
                  "models": {name: _row(1e6, 1.0, 10.0, scores, scores) for name in ("teacher", "student")}}
    assert list(model_comparison.comparison_table(comparison).columns) == [
        "params (M)", "size (MB)", "reviews/s (CPU, 40 reviews)", "accuracy (40 test)", "95% low (40 test)",
        "95% high (40 test)", "f1 (40 test)"]


def test_the_cpu_sample_is_seeded_bounded_and_holds_the_timed_reviews():
    sample, timed = scored_sets.cpu_samples(25000, 2000, 256, seed=1)
    assert len(sample) == 2000 and len(set(sample)) == 2000 and len(timed) == 256
    assert set(timed) <= set(sample)
    again = scored_sets.cpu_samples(25000, 2000, 256, seed=1)
    assert np.array_equal(sample, again[0]) and np.array_equal(timed, again[1])
    everything, _ = scored_sets.cpu_samples(40, 2000, 256, seed=1)
    assert list(everything) == list(range(40))  # fewer test reviews than the sample: all of them
    assert list(scored_sets.cpu_samples(40, None, 8, seed=1)[0]) == list(range(40))  # none = all


def test_throughput_is_positive(tiny_teacher, tiny_tokenizer):
    ds = datasets.Dataset.from_dict({"input_ids": [[2, 50, 3]] * 10, "attention_mask": [[1] * 3] * 10, "labels": [0] * 10})
    assert model_comparison.cpu_throughput(tiny_teacher, ds, tiny_tokenizer, batch_size=4) > 0


def rows_baseline(comparison):
    row = comparison["models"]["baseline"]
    return row["params"], row["size_mb"], row["reviews_per_s"]


def test_compare_scores_every_model_on_the_same_sample_of_every_set(tiny_teacher, tiny_tokenizer, synthetic, tmp_path):
    from helpers.evaluate import baseline
    from helpers.runs.config import resolve_params

    student = models.distil_from_teacher(tiny_teacher)
    sets = {"test": synthetic["val"], "short": synthetic["train"].select(range(30))}  # 64 and 30 reviews
    params = resolve_params("smoke", {"n_cpu_test": 24, "n_speed": 8})
    texts = {name: [tiny_tokenizer.decode(ids, skip_special_tokens=True) for ids in ds["input_ids"]]
             for name, ds in sets.items()}
    bag_of_words = baseline.fit_baseline(texts["test"][:40], sets["test"]["labels"][:40], texts["test"][40:],
                                         sets["test"]["labels"][40:], seed=0)
    probs = {name: {"baseline": baseline.baseline_proba(bag_of_words, texts[name]),
                    **{who: sentiment.positive_probability(prediction.predict_logits(model, ds, tiny_tokenizer, 16))
                       for who, model in (("teacher", tiny_teacher), ("student", student))}}
             for name, ds in sets.items()}
    for name, model in (("teacher", tiny_teacher), ("student", student)):
        model.save_pretrained(tmp_path / name)
    _, timed = scored_sets.cpu_samples(64, 24, 8, params.seed)
    n_params, size_mb, speed = baseline.footprint(bag_of_words, [texts["test"][i] for i in timed])
    footprint = {"params": n_params, "size_mb": size_mb, "reviews_per_s": speed}  # as the evaluate stage measures it
    onnx_dir = None
    if ONNX:  # the student's ONNX copies, as the distill stage writes them (helpers.serve.export.student_copies)
        from helpers.serve import export

        onnx_dir = tmp_path / "onnx"
        onnx_dir.mkdir()
        export.write_copies(student, onnx_dir)
    comparison = model_comparison.compare({"teacher": (tiny_teacher, tmp_path / "teacher"), "student": (student, tmp_path / "student")},
                                 sets, probs, tiny_tokenizer, params, footprint, onnx_dir)
    assert rows_baseline(comparison) == (n_params, round(size_mb, 2), round(speed, 2))
    assert comparison["reviews"] == {"test": 64, "cpu_sample": 24, "timed": 8}
    assert comparison["cpu"] == {"batch_size": params.eval_batch_size, "threads": torch.get_num_threads()}
    rows = comparison["models"]
    copies = ["student_int8", "student_onnx", "student_onnx_int8"] if ONNX else ["student_int8"]
    assert list(rows) == ["baseline", "teacher", "student", *copies]
    sample, _ = scored_sets.cpu_samples(64, 24, 8, params.seed)
    labels = np.asarray(sets["test"]["labels"])
    for name in ("baseline", "teacher", "student"):
        whole = metrics.classification_metrics(labels, probs["test"][name])
        assert rows[name]["test"] == {k: whole[k] for k in ("accuracy", "accuracy_ci95", "f1")}
        expected = metrics.classification_metrics(labels[sample], probs["test"][name][sample])["accuracy"]
        assert rows[name]["cpu_sample"]["accuracy"] == expected
        assert rows[name]["reviews_per_s"] > 0 and rows[name]["size_mb"] > 0 and rows[name]["params"] > 0
    for name in copies:  # the CPU copies: scored on the sample (the fp32 ONNX copy on the timed reviews), timed alike
        scope = "timed" if name == "student_onnx" else "cpu_sample"
        assert rows[name]["test"] is None and rows[name][scope]["accuracy"] >= 0
        assert rows[name]["reviews_per_s"] > 0 and 0 < rows[name]["size_mb"] < rows["student"]["size_mb"] * 1.5
    if ONNX:  # the fp32 ONNX copy is the student: the same answers on the same reviews
        assert rows["student_onnx"]["cpu_sample"] is None and rows["student_onnx"]["timed"] == rows["student"]["timed"]
        assert rows["student_onnx_int8"]["size_mb"] < rows["student_onnx"]["size_mb"]
        table = model_comparison.comparison_table(comparison)
        assert table.loc["student_onnx", "accuracy (timed 8)"] == rows["student_onnx"]["timed"]["accuracy"]
        assert np.isnan(table.loc["student_onnx", "accuracy (CPU sample of 24)"])
    assert comparison["paired"]["student_int8 - student"]["n"] == 24 and comparison["paired"]["teacher - baseline"]["n"] == 64
    short = comparison["extra_test_sets"]["short"]
    assert short["reviews"] == {"test": 30, "cpu_sample": 24, "timed": 8}
    assert set(short["models"]) == {"baseline", "teacher", "student", *copies}
    table = model_comparison.extra_sets_table(comparison)
    assert table.loc[("short", "student_int8"), "reviews"] == 24 and table.loc[("short", "teacher"), "reviews"] == 30
    if ONNX:
        assert table.loc[("short", "student_onnx"), "reviews"] == 8


def test_a_model_that_predicted_in_bf16_leaves_plain_and_quantizes(tiny_teacher, tiny_tokenizer, synthetic):
    """The bug a bf16 CPU met: predicting through Accelerate wrapped forward in bf16 autocast, the int8
    copy kept the wrapper and its int8 layers got bf16 activations ("expected scalar type Float")."""
    from helpers.runs.config import resolve_params

    student = models.distil_from_teacher(tiny_teacher)
    settings = trainer.TrainSettings.from_params(resolve_params("smoke", {"precision": "bf16"}))
    prediction.predict_sets(student, {"val": synthetic["val"]}, tiny_tokenizer, 16, accelerators.make_accelerator(settings))
    assert "_original_forward" not in student.__dict__  # Accelerate's autocast wrapper is gone
    outputs = []
    student.classifier.register_forward_hook(lambda module, args, out: outputs.append(out.dtype))
    fp32 = prediction.predict_logits(student, synthetic["val"], tiny_tokenizer, 16)
    assert set(outputs) == {torch.float32}  # timed on the CPU, it runs in fp32, not bf16
    logits, _ = prediction.timed_cpu_logits(quantize_int8(student), synthetic["val"], tiny_tokenizer, 16)
    assert np.abs(logits - fp32).max() < 0.05


def test_quantizing_a_model_still_wrapped_in_bf16_autocast_gives_a_plain_int8_copy(tiny_teacher, tiny_tokenizer,
                                                                                   synthetic):
    from helpers.runs.config import resolve_params

    settings = trainer.TrainSettings.from_params(resolve_params("smoke", {"precision": "bf16"}))
    wrapped = accelerators.make_accelerator(settings).prepare(models.distil_from_teacher(tiny_teacher))
    assert "_original_forward" in wrapped.__dict__
    int8 = quantize_int8(wrapped)
    logits, _ = prediction.timed_cpu_logits(int8, synthetic["val"], tiny_tokenizer, 16)
    assert np.isfinite(logits).all()


def test_int8_student_quantizes_every_linear_layer_and_keeps_its_predictions(tiny_teacher, tiny_tokenizer, synthetic):
    student = models.distil_from_teacher(tiny_teacher)
    int8 = quantize_int8(student)
    linear = [m for m in student.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in int8.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == len(linear) > 0
    assert not any(isinstance(m, torch.nn.Linear) and not isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
                   for m in int8.modules())
    assert model_comparison.serialized_mb(int8) < model_comparison.serialized_mb(student)
    fp32 = prediction.predict_logits(student, synthetic["val"], tiny_tokenizer, 16)
    logits, seconds = prediction.timed_cpu_logits(int8, synthetic["val"], tiny_tokenizer, 16)
    assert seconds > 0 and logits.shape == fp32.shape
    assert np.abs(logits - fp32).max() < 0.05  # int8 weights move the logits a little, not the answers
    assert isinstance(next(student.parameters()), torch.nn.Parameter)  # the fp32 student is left as it was


def test_a_cpu_copy_is_timed_after_an_untimed_batch_like_every_model(synthetic):
    import time

    from helpers.runs.config import resolve_params

    calls = []

    def logits_of(dataset):  # a copy whose first call pays for its set-up
        calls.append(len(dataset))
        time.sleep(0.5 if len(calls) == 1 else 0.0)
        return np.zeros((len(dataset), 2))

    params = resolve_params("smoke", {"n_cpu_test": 24, "n_speed": 8, "eval_batch_size": 4})
    probs, seconds = model_comparison._copy_probabilities(logits_of, "cpu_sample", {"test": synthetic["val"]}, params)
    assert calls == [4, 8, 16] and seconds < 0.4  # warm-up batch, the timed reviews, the rest of the sample
    assert np.isfinite(probs["test"]).sum() == 24
