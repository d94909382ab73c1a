"""The one interface helpers.predict scores with: a run folder's PyTorch model or an export folder's ONNX copy."""
from abc import ABC, abstractmethod

from helpers.core import sentiment


class Classifier(ABC):
    """Texts in, calibrated logits out. A backend also has `batch_size` (the run's eval_batch_size: the default of
    helpers.predict) and `engine` (its name, for the summary); P(positive) and the label names are shared."""
    label_names = sentiment.PIPELINE_LABELS  # 0: NEGATIVE, 1: POSITIVE, as the saved models answer
    positive_probability = staticmethod(sentiment.positive_probability)

    @classmethod
    @abstractmethod
    def load(cls, folder, model="student", threads=None):
        """`model` ('student', 'int8' or 'teacher') of `folder`; `threads` None leaves the library its own choice."""

    @abstractmethod
    def logits(self, texts, batch_size, on_batch=None):
        """Calibrated logits for `texts`, in their order; `on_batch(n)` told as n more are done."""
