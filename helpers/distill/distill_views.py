"""05's views: teacher and student side by side, the soft targets and the parts of the distillation's own loss."""
import pandas as pd

from helpers.core.models import DISTIL_FROM_TEACHER
from helpers.core.sentiment import LABEL_NAMES, positive_probability
from helpers.data.imdb import preview
from helpers.distill.distillation import TEACHER_LOGITS, distillation_loss, distillation_terms, distillation_weights
from helpers.train.batching import make_loader
from helpers.train.prediction import batch_logits

PREVIEW_CHARS = 90  # characters of a review shown in a table


def side_by_side(named_models, tokenizer, test, texts, n=6):
    """P(positive) of each model on the first `n` reviews of the tokenized test split (`texts`: their text)."""
    n = min(n, len(test))
    batch = next(iter(make_loader(test.select(range(n)), tokenizer, n)))
    table = pd.DataFrame({"label": [LABEL_NAMES[int(label)] for label in batch["labels"]]},
                         index=pd.RangeIndex(n, name="test review"))
    for name, model in named_models.items():
        table[f"P(positive): {name}"] = positive_probability(batch_logits(model, batch).numpy()).round(3)
    table["review"] = [preview(text, PREVIEW_CHARS) for text in list(texts)[:n]]
    return table


def with_teacher_logits(batch, teacher):
    """The batch with the teacher's logits added as the distillation loop's batches carry them: raw, uncalibrated."""
    return {**batch, TEACHER_LOGITS: batch_logits(teacher, batch)}


def soft_targets(batch, temperature):
    """The teacher's P(positive) for each review of a batch, plain and softened at `temperature`: the soft target."""
    logits = batch[TEACHER_LOGITS].float().numpy()
    plain, soft = (positive_probability(logits, t).round(3) for t in (1.0, temperature))
    return pd.DataFrame({"label": [LABEL_NAMES[int(label)] for label in batch["labels"]],
                         "teacher P(positive)": plain, f"soft target at T={temperature:g}": soft},
                        index=pd.RangeIndex(len(logits), name="review"))


def loss_parts(logits, batch, temperature, alpha):
    """The parts of `distill.distillation_loss` on a batch, as batch means: the hard and soft terms, and
    how alpha mixes them (unlabelled reviews weigh the soft term alone); "total" is that loss."""
    hard, soft, labelled = distillation_terms(logits, batch, temperature)
    weight = distillation_weights(labelled, alpha)
    mixed_hard, mixed_soft = (weight * hard).mean().item(), ((1 - weight) * soft).mean().item()
    return {"hard: cross-entropy with the labels": hard[labelled].mean().item() if labelled.any() else float("nan"),
            "soft: T² · KL(teacher_T ‖ student_T)": soft.mean().item(), "labelled reviews": int(labelled.sum()),
            "alpha · hard": mixed_hard, "(1 - alpha) · soft": mixed_soft, "total": mixed_hard + mixed_soft}


def distillation_parts(named_students, batch, temperature, alpha):
    """`loss_parts` of each student (raw, as the loop saw it) on one batch carrying the teacher's logits, one column
    per student, with the loop's own distillation_loss in the last row as a check."""
    columns = {}
    for name, student in named_students.items():
        logits = batch_logits(student, batch)
        columns[name] = {**loss_parts(logits, batch, temperature, alpha),
                         "distillation.distillation_loss": distillation_loss(logits, batch, temperature, alpha).item()}
    return pd.DataFrame(columns).round(4).rename_axis(f"alpha {alpha:g}, T {temperature:g}")


def student_text(params):
    """Where this run's student comes from."""
    if params.student_model == DISTIL_FROM_TEACHER:
        return ("**This run's student** (`student_model: distil-from-teacher`): a DistilBERT built from every other "
                "layer of the fine-tuned teacher (half the layers, the same width and vocabulary), as DistilBERT "
                "itself was initialised from BERT; its head starts from the teacher's and must adapt to fewer layers.")
    return (f"**This run's student** (`student_model: {params.student_model}`): the pre-trained model of that name "
            "with a new 2-label head; it shares the teacher's vocabulary, so both read the same word pieces.")
