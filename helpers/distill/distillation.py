"""Stage 5: the distillation loss. The student trains through the teacher's loop (helpers.train.trainer); only the
loss changes, to Hinton et al.'s (2015): the KL divergence of the softened predictions at temperature T, scaled by
T**2 so its gradients keep their size as T changes, mixed with the cross-entropy on the labels:

    loss = alpha * CE(student, labels) + (1 - alpha) * T**2 * KL(teacher_T || student_T)

Unlabelled reviews (label -1) learn from the soft term alone. The teacher's logits are computed once, up front, and
travel with each training batch; the comparison of every model: helpers.distill.model_comparison.
"""
from functools import partial

import datasets
import torch.nn.functional as F

from helpers.tokens.tokens import tokenize_splits
from helpers.train.prediction import predict_sets

TEACHER_LOGITS = "teacher_logits"


def distillation_terms(logits, batch, temperature):
    """Per review: cross-entropy with its label (0 for an unlabelled review, label -1), T² · KL(teacher_T ||
    student_T), and whether it has a label."""
    labelled = batch["labels"] >= 0
    hard = F.cross_entropy(logits, batch["labels"].clamp(min=0), reduction="none") * labelled
    soft_student = F.log_softmax(logits / temperature, dim=-1)
    soft_teacher = F.log_softmax(batch[TEACHER_LOGITS].float() / temperature, dim=-1)
    soft = temperature**2 * F.kl_div(soft_student, soft_teacher, reduction="none", log_target=True).sum(dim=-1)
    return hard, soft, labelled


def distillation_weights(labelled, alpha):
    """Each review's weight on the hard term: alpha if it has a label, 0 if only the teacher labelled it."""
    return alpha * labelled.float()


def distillation_loss(logits, batch, temperature, alpha):
    """The batch mean of alpha * hard + (1 - alpha) * soft over labelled reviews, soft alone over unlabelled ones."""
    hard, soft, labelled = distillation_terms(logits, batch, temperature)
    weight = distillation_weights(labelled, alpha)
    return (weight * hard + (1 - weight) * soft).mean()


def make_distillation_loss(params):
    return partial(distillation_loss, temperature=params.temperature, alpha=params.alpha)


def with_unlabelled(train_split, frame, tokenizer, params):
    """The student's training reviews: the labelled ones, then `frame`'s unlabelled ones (label -1) tokenized alike."""
    if frame is None or not len(frame):
        return train_split
    extra = tokenize_splits({"unlabelled": frame}, tokenizer, params.max_length, params.truncation_head)["unlabelled"]
    return datasets.concatenate_datasets([train_split, extra.cast(train_split.features)])


def add_teacher_logits(teacher, dataset, tokenizer, batch_size, accelerator):
    """The dataset with the teacher's logits for each review as an extra column, predicted on the stage's accelerator."""
    logits = predict_sets(teacher, {"train": dataset}, tokenizer, batch_size, accelerator, desc="teacher logits")["train"]
    return dataset.add_column(TEACHER_LOGITS, logits.tolist())
