import pytest
import torch

from helpers.core import models
from helpers.core.errors import ConfigError


def _batch(tokenizer):
    return tokenizer(["a wonderful, moving film", "dull and far too long, i left early"], padding=True,
                     return_tensors="pt", return_token_type_ids=False)


def test_student_with_every_layer_computes_the_teachers_hidden_states(tiny_teacher, tiny_tokenizer):
    student = models.distil_from_teacher(tiny_teacher, layers=range(4)).eval()
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        expected = tiny_teacher.eval().bert(**batch).last_hidden_state
        got = student.distilbert(**batch).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_default_student_keeps_every_other_teacher_layer(tiny_teacher):
    student = models.distil_from_teacher(tiny_teacher)
    assert student.config.n_layers == 2
    copied = student.distilbert.transformer.layer[1].ffn.lin1.weight
    torch.testing.assert_close(copied, tiny_teacher.bert.encoder.layer[2].intermediate.dense.weight)
    assert models.count_parameters(student) < models.count_parameters(tiny_teacher)
    torch.testing.assert_close(student.classifier.weight, tiny_teacher.classifier.weight)


def test_student_weights_are_copies_not_shared(tiny_teacher):
    student = models.distil_from_teacher(tiny_teacher)
    with torch.no_grad():
        student.distilbert.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(student.distilbert.embeddings.word_embeddings.weight,
                           tiny_teacher.bert.embeddings.word_embeddings.weight)


def test_tiny_teacher_is_seeded(tiny_tokenizer):
    a = models.load_teacher(models.TINY, tiny_tokenizer, seed=3)
    torch.rand(5)  # whatever ran before must not change the initialisation
    b = models.load_teacher(models.TINY, tiny_tokenizer, seed=3)
    torch.testing.assert_close(a.classifier.weight, b.classifier.weight)
    assert a.config.num_labels == 2 and a.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_saved_model_answers_transformers_pipeline_with_the_ecosystems_labels(tmp_path, tiny_teacher, tiny_tokenizer,
                                                                                role):
    """A trained folder (weights + tokenizer, as the loop saves it) loads as it is in transformers' own pipeline."""
    from transformers import pipeline

    model = tiny_teacher if role == "teacher" else models.distil_from_teacher(tiny_teacher)
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    classify = pipeline("text-classification", model=str(tmp_path), device="cpu")
    answers = classify(["A joy from start to finish.", "Two hours I will never get back."])
    assert {answer["label"] for answer in answers} <= {"NEGATIVE", "POSITIVE"}
    assert all(0.5 <= answer["score"] <= 1 for answer in answers)
    every = classify("A joy.", top_k=None)
    assert sorted(answer["label"] for answer in every) == ["NEGATIVE", "POSITIVE"]


def test_a_hub_name_passes_through_unchanged():
    assert models.model_source("bert-base-uncased") == "bert-base-uncased"


def test_student_with_another_vocabulary_is_refused(tmp_path, tiny_teacher, tiny_tokenizer):
    other = models.distil_from_teacher(tiny_teacher)
    other.resize_token_embeddings(100)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="vocabulary of 100 tokens but the teacher has 2000"):
        models.load_student(str(tmp_path / "other"), tiny_teacher, seed=0)


def test_trained_models_load_from_safetensors(tmp_path, tiny_teacher):
    tiny_teacher.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    loaded = models.load_trained(tmp_path / "m")
    torch.testing.assert_close(loaded.classifier.weight, tiny_teacher.classifier.weight)


def test_a_half_precision_checkpoint_trains_in_float32(tmp_path, tiny_teacher, tiny_tokenizer):
    tiny_teacher.half().save_pretrained(tmp_path / "fp16")
    tiny_tokenizer.save_pretrained(tmp_path / "fp16")
    loaded = models.load_teacher(str(tmp_path / "fp16"), tiny_tokenizer, seed=0)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert models.load_trained(tmp_path / "fp16").dtype == torch.float32


@pytest.fixture
def cls_teacher(tiny_tokenizer):
    return models.load_teacher(models.TINY, tiny_tokenizer, seed=0, head="cls")


def test_the_cls_head_keeps_berts_encoder_exactly(tiny_teacher, cls_teacher, tiny_tokenizer):
    """Same seed, same BERT weights: the 'cls' teacher's hidden states are the BERT teacher's to the bit."""
    from transformers import ElectraForSequenceClassification

    assert isinstance(cls_teacher, ElectraForSequenceClassification) and not hasattr(cls_teacher.electra, "pooler")
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        expected = tiny_teacher.eval().bert(**batch).last_hidden_state
        got = cls_teacher.eval().electra(**batch).last_hidden_state
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert models.count_parameters(cls_teacher) == models.count_parameters(tiny_teacher)  # pooler's size moved to the head


def test_the_cls_head_reads_the_cls_state_without_tanh(cls_teacher, tiny_tokenizer):
    batch = _batch(tiny_tokenizer)
    head = cls_teacher.classifier
    with torch.no_grad():
        cls_state = cls_teacher.eval().electra(**batch).last_hidden_state[:, 0]
        expected = head.out_proj(torch.nn.functional.gelu(head.dense(cls_state)))
        torch.testing.assert_close(cls_teacher(**batch).logits, expected)


def test_a_cls_teacher_saves_and_loads_with_transformers_own_classes(tmp_path, cls_teacher, tiny_tokenizer):
    from transformers import AutoModelForSequenceClassification, pipeline

    models.save_classifier(cls_teacher, tiny_tokenizer, tmp_path / "model")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**batch).logits, cls_teacher.eval()(**batch).logits)
    answers = pipeline("text-classification", model=str(tmp_path / "model"), device="cpu")(["A joy.", "A bore."])
    assert {answer["label"] for answer in answers} <= {"NEGATIVE", "POSITIVE"}


def test_the_student_of_a_cls_teacher_is_built_from_its_layers(cls_teacher, tiny_tokenizer):
    student = models.distil_from_teacher(cls_teacher, layers=range(4)).eval()
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        expected = cls_teacher.eval().electra(**batch).last_hidden_state
        torch.testing.assert_close(student.distilbert(**batch).last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(student.pre_classifier.weight, cls_teacher.classifier.dense.weight)
    torch.testing.assert_close(student.classifier.weight, cls_teacher.classifier.out_proj.weight)


def test_the_cls_head_needs_a_bert(tiny_teacher):
    student = models.distil_from_teacher(tiny_teacher)
    with pytest.raises(ConfigError, match="head 'cls' needs a BERT teacher.*use head 'pooler'"):
        models.cls_head_classifier(student, "distilbert-base-uncased")
