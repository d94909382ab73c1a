import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import distill


def _batch(teacher_logits, labels):
    return {"teacher_logits": torch.tensor(teacher_logits), "labels": torch.tensor(labels)}


def test_alpha_one_is_plain_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    batch = _batch([[0.0, 3.0], [1.0, 1.0]], [0, 1])
    loss = distill.distillation_loss(logits, batch, temperature=4.0, alpha=1.0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["labels"]))


def test_soft_term_vanishes_when_student_matches_teacher():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    loss = distill.distillation_loss(logits, _batch(logits.tolist(), [0, 1]), temperature=2.0, alpha=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_soft_term_is_kl_at_temperature_times_t_squared():
    student, teacher, t = torch.tensor([[1.0, 0.0]]), [[0.0, 2.0]], 3.0
    p = F.softmax(torch.tensor(teacher) / t, -1)
    q = F.softmax(student / t, -1)
    expected = (p * (p / q).log()).sum() * t**2
    loss = distill.distillation_loss(student, _batch(teacher, [1]), temperature=t, alpha=0.0)
    torch.testing.assert_close(loss, expected)


def test_teacher_logits_travel_with_the_training_reviews(tiny_teacher, tiny_tokenizer):
    from helpers.config import resolve_params
    from helpers.training import TrainSettings, make_loader

    ds = datasets.Dataset.from_dict({"input_ids": [[2, 50, 60, 3], [2, 70, 3]], "attention_mask": [[1] * 4, [1] * 3],
                                     "labels": [1, 0]})
    with_logits = distill.add_teacher_logits(tiny_teacher, ds, tiny_tokenizer,
                                             TrainSettings.from_params(resolve_params("smoke")))
    assert len(with_logits[distill.TEACHER_LOGITS]) == 2 and len(with_logits[distill.TEACHER_LOGITS][0]) == 2
    batch = next(iter(make_loader(with_logits, tiny_tokenizer, 2, extra_columns=(distill.TEACHER_LOGITS,))))
    assert batch[distill.TEACHER_LOGITS].shape == (2, 2)


def test_comparison_table_adds_each_models_share_of_the_teacher():
    comparison = {"teacher": {"params": 100_000_000, "size_mb": 4.0, "reviews_per_s": 10.0, "accuracy": 0.9, "f1": 0.9},
                  "student": {"params": 50_000_000, "size_mb": 2.0, "reviews_per_s": 25.0, "accuracy": 0.855, "f1": 0.81},
                  "student_int8": {"params": 50_000_000, "size_mb": 1.0, "reviews_per_s": 50.0, "accuracy": 0.85, "f1": 0.8}}
    table = distill.comparison_table(comparison)
    assert table.loc["student / teacher", "reviews/s (CPU)"] == 2.5
    assert table.loc["student_int8 / teacher", "reviews/s (CPU)"] == 5.0
    assert table.loc["teacher", "params (M)"] == 100.0 and table.loc["student / teacher", "params (M)"] == 0.5
    assert table.loc["student / teacher", "accuracy"] == pytest.approx(0.95)


def test_throughput_is_positive_and_speed_sample_is_fixed(tiny_teacher, tiny_tokenizer):
    ds = datasets.Dataset.from_dict({"input_ids": [[2, 50, 3]] * 10, "attention_mask": [[1] * 3] * 10, "labels": [0] * 10})
    assert distill.cpu_throughput(tiny_teacher, ds, tiny_tokenizer, batch_size=4) > 0
    a, b = distill.speed_sample(ds, 4, seed=1), distill.speed_sample(ds, 4, seed=1)
    assert len(a) == 4 and a["input_ids"] == b["input_ids"]


def test_int8_student_quantizes_every_linear_layer_and_keeps_its_predictions(tiny_teacher, tiny_tokenizer, synthetic):
    from helpers import models, training

    student = models.distil_from_teacher(tiny_teacher)
    int8 = distill.quantize_int8(student)
    linear = [m for m in student.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in int8.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == len(linear) > 0
    assert not any(isinstance(m, torch.nn.Linear) and not isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
                   for m in int8.modules())
    assert distill.serialized_mb(int8) < distill.serialized_mb(student)
    fp32 = training.predict_logits(student, synthetic["val"], tiny_tokenizer, 16)
    logits, seconds = distill.timed_cpu_logits(int8, synthetic["val"], tiny_tokenizer, 16)
    assert seconds > 0 and logits.shape == fp32.shape
    assert np.abs(logits - fp32).max() < 0.05  # int8 weights move the logits a little, not the answers
    assert isinstance(next(student.parameters()), torch.nn.Parameter)  # the fp32 student is left as it was
