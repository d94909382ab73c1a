"""helpers.tokens.token_views, training_views and distill_views: each view computes what it says, from the code the
stages run, and changes nothing."""
import json
import math
import random
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from helpers.core import models, sentiment
from helpers.core.accelerators import make_accelerator
from helpers.distill import distill_views, distillation
from helpers.pipeline import stages
from helpers.pipeline.checks import open_run
from helpers.tokens import token_views, tokens
from helpers.train import optimization, prediction, trainer, training_views
from helpers.train.batching import EpochSampler, make_loader, token_lengths
from helpers.train.trainer import TrainSettings

MAX_LENGTH, HEAD = 32, 0.25


def _settings(**changes):
    from helpers.runs.config import resolve_params

    return TrainSettings.from_params(resolve_params("smoke", {"precision": "fp32", **changes}))


def _random_states():
    return random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state()


@pytest.fixture(scope="module")
def reviews(sample):
    short, long = token_views.short_and_long(sample["train"])
    return short, long


def test_short_and_long_are_the_extremes_of_the_split(sample, reviews):
    lengths = sample["train"]["text"].str.len()
    assert [len(text) for text in reviews] == [lengths.min(), lengths.max()]


def test_word_pieces_are_the_ids_the_tokenize_stage_writes(tiny_tokenizer, reviews):
    frame = pd.DataFrame({"text": list(reviews), "label": [0, 1]})
    written = tokens.tokenize_splits({"train": frame}, tiny_tokenizer, MAX_LENGTH, HEAD)["train"]
    for i, text in enumerate(reviews):
        table = token_views.word_pieces(tiny_tokenizer, text, MAX_LENGTH, HEAD)
        assert table["id"].tolist() == written[i]["input_ids"]
        assert tiny_tokenizer.convert_tokens_to_ids(table["piece"].tolist()) == table["id"].tolist()  # round trip
        assert table["mask"].tolist() == [1] * len(table)  # one review alone: nothing padded
        assert table["piece"].iloc[0] == "[CLS]" and table["piece"].iloc[-1] == "[SEP]"
    assert len(token_views.word_pieces(tiny_tokenizer, reviews[1], MAX_LENGTH, HEAD)) == MAX_LENGTH


def test_the_cut_keeps_head_and_tail_and_shows_the_pieces_at_its_edges(tiny_tokenizer, reviews):
    long = reviews[1]
    full = tiny_tokenizer.convert_ids_to_tokens(tokens.full_ids(tiny_tokenizer, [long])[0])
    counts = token_views.cut_counts(tiny_tokenizer, long, MAX_LENGTH, HEAD)
    head, tail = counts["kept from the head ([CLS] included)"], counts["kept from the tail ([SEP] included)"]
    assert (head, tail) == (8, 24) and counts["pieces in the review"] == len(full)
    assert head + tail + counts["cut, never read"] == len(full)
    read = token_views.word_pieces(tiny_tokenizer, long, MAX_LENGTH, HEAD)["piece"].tolist()
    assert read == full[:head] + full[len(full) - tail:]
    edges = token_views.around_cut(tiny_tokenizer, long, MAX_LENGTH, HEAD, n=3)
    assert edges.index.tolist() == [5, 6, 7, 8, 9, 10] + list(range(len(full) - tail - 3, len(full) - tail + 3))
    assert edges["piece"].tolist() == [full[i] for i in edges.index]
    assert edges["read"].tolist() == ["yes (head)"] * 3 + ["no: cut"] * 6 + ["yes (tail)"] * 3


def test_a_review_that_fits_is_not_cut(tiny_tokenizer):
    text = "a short review that fits"
    counts = token_views.cut_counts(tiny_tokenizer, text, MAX_LENGTH, HEAD)
    assert counts["cut, never read"] == 0 and counts["kept from the tail ([SEP] included)"] == 0
    assert token_views.around_cut(tiny_tokenizer, text, MAX_LENGTH, HEAD).empty


def test_loading_a_model_to_look_at_is_the_stages_model_and_leaves_the_random_state(smoke_params, tiny_tokenizer):
    torch.manual_seed(123)
    np.random.seed(123)
    before = _random_states()
    teacher = training_views.untrained_teacher(smoke_params, tiny_tokenizer)
    student = training_views.student_at_start(smoke_params, teacher)
    after = _random_states()
    assert before[:2] == after[:2] and torch.equal(before[2], after[2])
    staged = models.load_teacher(smoke_params.model, tiny_tokenizer, smoke_params.seed, smoke_params.attention_dropout,
                                 smoke_params.head)
    for name, weights in staged.state_dict().items():  # the same new head as the train stage draws
        assert torch.equal(weights, teacher.state_dict()[name]), name
    staged_student = models.load_student(smoke_params.student_model, staged, smoke_params.seed)
    assert all(torch.equal(w, student.state_dict()[n]) for n, w in staged_student.state_dict().items())


def test_model_facts_and_parts_add_up(tiny_teacher):
    facts = training_views.model_facts(teacher=tiny_teacher)["teacher"]
    assert facts["layers"] == 4 and facts["hidden size"] == 32 and facts["parameters"] == models.count_parameters(tiny_teacher)
    parts = training_views.model_parts(tiny_teacher, models.TINY)
    assert parts.index.tolist() == ["embeddings"] + [f"encoder layer {i}" for i in range(4)] + ["pooler", "classifier"]
    assert parts["parameters"].sum() == models.count_parameters(tiny_teacher)
    assert parts["tensors"].sum() == len(list(tiny_teacher.parameters()))
    assert parts.loc["classifier", "parameters"] == 32 * 2 + 2
    assert set(parts["weights"]) == {"new (random)"}  # the tiny model has no pre-trained checkpoint


def test_model_parts_marks_what_the_checkpoint_lacks_as_new(tmp_path, tiny_teacher):
    """A checkpoint of the base model without its pooler, LayerNorm under its old names (as bert-base-uncased's)."""
    tiny_teacher.bert.config.save_pretrained(tmp_path)
    weights = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"):
               tensor.contiguous() for name, tensor in tiny_teacher.bert.state_dict().items() if not name.startswith("pooler")}
    save_file(weights, tmp_path / "model.safetensors")
    parts = training_views.model_parts(tiny_teacher, str(tmp_path))
    assert parts["weights"].to_dict() == {"embeddings": "pre-trained", **{f"encoder layer {i}": "pre-trained" for i in range(4)},
                                          "pooler": "new (random)", "classifier": "new (random)"}


def test_a_cls_head_model_finds_its_encoder_in_a_bert_checkpoint(tmp_path, tiny_teacher):
    """bert-base-uncased stores its weights as 'bert.*'; the 'cls' head model holds them as 'electra.*'."""
    tiny_teacher.save_pretrained(tmp_path)
    parts = training_views.model_parts(models.cls_head_classifier(tiny_teacher), str(tmp_path))
    assert parts["weights"].to_dict() == {"embeddings": "pre-trained", **{f"encoder layer {i}": "pre-trained" for i in range(4)},
                                          "classifier": "new (random)"}


def test_the_first_batch_is_the_loops_first_batch_padded_to_a_multiple_of_8(synthetic, tiny_tokenizer):
    settings = _settings(batch_size=16)
    batch = training_views.first_batch(synthetic["train"], tiny_tokenizer, settings)
    first = EpochSampler(token_lengths(synthetic["train"]), 16, settings.seed, True).order(1)[:16]
    expected = [synthetic["train"][i]["input_ids"] for i in first]
    assert [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])] == expected
    assert batch["labels"].tolist() == [synthetic["train"][i]["labels"] for i in first]
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] - max(map(len, expected)) < 8
    summary = training_views.batch_summary(batch)
    assert summary["input_ids shape"] == tuple(batch["input_ids"].shape) and summary["labels shape"] == (16,)


def test_batch_summary_and_rows_of_a_hand_built_batch():
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]])
    batch = {"input_ids": mask * 7, "attention_mask": mask, "labels": torch.tensor([0, 1])}
    summary = training_views.batch_summary(batch)
    assert summary["padding share"] == 0.5 and summary["shortest review (tokens)"] == 3
    assert summary["longest review (tokens)"] == 5 and summary["padded to (a multiple of 8)"] == 8
    rows = training_views.batch_rows(batch)
    assert rows.to_dict("list") == {"tokens": [3, 5], "padding": [5, 3], "label": ["negative", "positive"]}


def test_epoch_padding_is_what_the_loaders_batches_hold(synthetic, tiny_tokenizer):
    shares = training_views.epoch_padding(synthetic["train"], _settings(batch_size=16)).tolist()
    for share, grouped in zip(shares, (True, False)):
        sampler = EpochSampler(token_lengths(synthetic["train"]), 16, 42, grouped)
        masks = [batch["attention_mask"] for batch in make_loader(synthetic["train"], tiny_tokenizer, 16, sampler)]
        assert share == round(1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks), 4)
    assert shares[0] < shares[1]  # length grouping pads less


def test_param_groups_table_splits_every_parameter_once(tiny_teacher):
    table = training_views.param_group_table(tiny_teacher, _settings(weight_decay=0.01))
    assert table["parameters"].sum() == models.count_parameters(tiny_teacher)
    assert table.loc["with weight decay", "weight_decay"] == 0.01 and table.loc["without weight decay", "weight_decay"] == 0.0
    decay, no_decay = optimization.param_groups(tiny_teacher, 0.01, 1e-3)
    assert table["tensors"].tolist() == [len(decay["params"]), len(no_decay["params"])]
    examples = {label: table.loc[label, "for example"].split(", ") for label in table.index}
    assert all(name.endswith(optimization.NO_DECAY) for name in examples["without weight decay"])
    assert not any(name.endswith(optimization.NO_DECAY) for name in examples["with weight decay"])


def test_param_groups_table_shows_each_layer_rate(tiny_teacher):
    table = training_views.param_group_table(tiny_teacher, _settings(layer_decay=0.5))
    assert table["parameters"].sum() == models.count_parameters(tiny_teacher)
    assert sorted(set(table["lr"] / table["lr"].max())) == pytest.approx([0.5 ** k for k in range(6)][::-1])


def test_the_schedule_is_the_one_the_loop_follows(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    settings = _settings(epochs=1, batch_size=16, lr=5e-3, warmup_ratio=0.25)
    total, warmup = training_views.optimizer_steps(len(synthetic["train"]), settings)
    assert (total, warmup) == (12, 3)
    shown = training_views.lr_schedule(len(synthetic["train"]), settings)
    assert shown.loc[1, "lr"] == 0.0 and shown.loc[warmup + 1, "lr"] == pytest.approx(settings.lr)  # the peak is lr
    assert shown["lr"].max() == pytest.approx(settings.lr) and shown.loc[warmup + 1, "phase"] == "peak"
    every = training_views.lr_schedule(len(synthetic["train"]), settings, shown=total)["lr"]
    assert every.index.tolist() == list(range(1, total + 1))
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, settings, tmp_path)
    # the loop records each step's lr after its scheduler step: the lr the next step uses
    recorded = [step["lr"] for step in history["steps"]]
    assert len(recorded) == total and recorded[:-1] == pytest.approx(every.tolist()[1:])


def test_a_constant_schedule_stays_at_lr_after_the_warmup(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    settings = _settings(epochs=1, batch_size=16, lr=5e-3, warmup_ratio=0.25, lr_schedule="constant")
    total, warmup = training_views.optimizer_steps(len(synthetic["train"]), settings)
    every = training_views.lr_schedule(len(synthetic["train"]), settings, shown=total)
    assert every["lr"].iloc[:warmup].tolist() == pytest.approx([settings.lr * s / warmup for s in range(warmup)])
    assert every["lr"].iloc[warmup:].tolist() == pytest.approx([settings.lr] * (total - warmup))
    assert set(every["phase"].iloc[warmup + 1:]) == {"constant"}
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, settings, tmp_path)
    assert [step["lr"] for step in history["steps"]][:-1] == pytest.approx(every["lr"].tolist()[1:])


def test_the_loss_of_an_untrained_model_is_near_ln2(synthetic, tiny_teacher, tiny_tokenizer):
    batch = training_views.first_batch(synthetic["train"], tiny_tokenizer, _settings(batch_size=16))
    loss = training_views.batch_loss(tiny_teacher, batch)
    tiny_teacher.eval()
    with torch.no_grad():
        logits = prediction.forward(tiny_teacher, batch)
    assert loss["cross-entropy"] == pytest.approx(F.cross_entropy(logits, batch["labels"]).item(), abs=1e-6)
    assert loss["ln 2 (a 50/50 guess)"] == pytest.approx(0.6931, abs=1e-4)
    assert abs(loss["cross-entropy"] - math.log(2)) < 0.05


def test_side_by_side_gives_each_models_probabilities(synthetic, tiny_teacher, tiny_tokenizer, smoke_params):
    student = training_views.student_at_start(smoke_params, tiny_teacher)
    val = synthetic["val"]
    table = distill_views.side_by_side({"teacher": tiny_teacher, "student": student}, tiny_tokenizer, val, [f"review {i}" for i in range(64)], n=5)
    for name, model in (("teacher", tiny_teacher), ("student", student)):
        expected = sentiment.positive_probability(prediction.predict_logits(model, val.select(range(5)), tiny_tokenizer, 5))
        assert table[f"P(positive): {name}"].to_numpy() == pytest.approx(expected, abs=1e-3)
    assert table["review"].tolist() == [f"review {i}" for i in range(5)]
    assert table["label"].tolist() == [sentiment.LABEL_NAMES[label] for label in val["labels"][:5]]


def test_soft_targets_soften_the_teachers_probabilities():
    batch = {"labels": torch.tensor([0, 1, 1]), distillation.TEACHER_LOGITS: torch.tensor([[2.0, -2.0], [-3.0, 3.0], [0.0, 0.0]])}
    table = distill_views.soft_targets(batch, 2.0)
    assert table["teacher P(positive)"].tolist() == pytest.approx([0.018, 0.998, 0.5], abs=1e-3)
    assert table["soft target at T=2"].tolist() == pytest.approx([0.119, 0.953, 0.5], abs=1e-3)


def test_the_loss_parts_recombine_to_the_distillation_loss():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=generator)
    batch = {"labels": torch.tensor([0, 1, 1, 0, 1, 0]), distillation.TEACHER_LOGITS: torch.randn(6, 2, generator=generator)}
    for temperature, alpha in ((2.0, 0.5), (4.0, 0.1), (1.0, 1.0)):
        parts = distill_views.loss_parts(logits, batch, temperature, alpha)
        assert parts["total"] == pytest.approx(distillation.distillation_loss(logits, batch, temperature, alpha).item(), abs=1e-6)
        assert parts["alpha · hard"] + parts["(1 - alpha) · soft"] == pytest.approx(parts["total"])
        assert parts["hard: cross-entropy with the labels"] == pytest.approx(F.cross_entropy(logits, batch["labels"]).item())
    same = distill_views.loss_parts(logits, {**batch, distillation.TEACHER_LOGITS: logits}, 2.0, 0.5)
    assert same["soft: T² · KL(teacher_T ‖ student_T)"] == pytest.approx(0.0, abs=1e-6)  # a student equal to its teacher


def test_the_teachers_logits_are_the_ones_the_loop_reads(synthetic, tiny_teacher, tiny_tokenizer):
    """The view's teacher logits on the loop's first batch are the ones distillation.add_teacher_logits puts in the
    training data: the saved teacher's raw logits, no calibration temperature (it stays in evaluate/)."""
    settings = _settings()
    with_logits = distillation.add_teacher_logits(tiny_teacher, synthetic["train"], tiny_tokenizer, settings.eval_batch_size,
                                             make_accelerator(settings))
    carried = training_views.first_batch(with_logits, tiny_tokenizer, settings, extra_columns=(distillation.TEACHER_LOGITS,))
    plain = training_views.first_batch(synthetic["train"], tiny_tokenizer, settings)
    shown = distill_views.with_teacher_logits(plain, tiny_teacher)[distillation.TEACHER_LOGITS]
    assert torch.allclose(shown, carried[distillation.TEACHER_LOGITS].float(), atol=1e-5)


def test_distillation_parts_of_a_student_on_a_batch_with_the_teachers_logits(synthetic, tiny_teacher, tiny_tokenizer,
                                                                            smoke_params):
    student = training_views.student_at_start(smoke_params, tiny_teacher)
    batch = distill_views.with_teacher_logits(training_views.first_batch(synthetic["train"], tiny_tokenizer, _settings()), tiny_teacher)
    tiny_teacher.eval()
    with torch.no_grad():
        assert torch.equal(batch[distillation.TEACHER_LOGITS], prediction.forward(tiny_teacher, batch))
    table = distill_views.distillation_parts({"at start": student}, batch, 2.0, 0.5)
    assert table.loc["total", "at start"] == table.loc["distillation.distillation_loss", "at start"]
    assert table.loc["soft: T² · KL(teacher_T ‖ student_T)", "at start"] >= 0


@pytest.mark.slow
def test_looking_before_the_train_stage_leaves_its_results_byte_identical(tmp_path):
    """What notebook 03 does before training (load the model, draw a batch, its loss, the schedule), then the
    train stage, against the train stage alone: the same weights and history to the byte."""
    run = open_run("smoke", tmp_path / "looked")
    stages.data_stage(run)
    stages.tokenize_stage(run)
    shutil.copytree(run.dir, tmp_path / "plain")
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    tokenized = tokens.load_tokenized(run.require("tokenize"))
    settings = TrainSettings.from_params(run.params)
    model = training_views.untrained_teacher(run.params, tokenizer)
    batch = training_views.first_batch(tokenized["train"], tokenizer, settings)
    training_views.batch_loss(model, batch)
    training_views.lr_schedule(len(tokenized["train"]), settings)
    training_views.epoch_padding(tokenized["train"], settings)
    stages.launch_train(run)
    stages.launch_train(open_run("smoke", tmp_path / "plain"))
    for name in ("train/model/model.safetensors", "train/history.json"):
        assert (tmp_path / "looked" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert json.loads((tmp_path / "looked" / "train/history.json").read_text())["steps"]
