"""A run's own model scoring raw texts with PyTorch, for helpers.predict on a run folder.

The texts are tokenized and cut as the run's training reviews were (helpers.tokens.tokens, with the run's
max_length and truncation_head), predicted through the one prediction path
(helpers.train.prediction.predict_logits) and calibrated with the temperature the run fitted for the
model: the stages save their models raw; one that already holds a temperature (its config records it)
is scaled by the rest.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from helpers.core import models, sentiment
from helpers.core.progress import quiet_library_bars
from helpers.evaluate import calibration
from helpers.runs.run_folder import load_run
from helpers.tokens import tokens
from helpers.train import prediction


@dataclass
class TorchClassifier:
    model: torch.nn.Module
    tokenizer: object
    scale: float  # calibrated logits = the model's logits * scale
    max_length: int
    truncation_head: float
    batch_size: int
    label_names = models.PIPELINE_LABELS

    @classmethod
    def load(cls, run_dir, who="student", threads=None):
        """`who` of a run folder: 'teacher', 'student' or 'int8' (the student quantized as the distill stage does)."""
        from helpers.core.int8 import quantize_int8

        quiet_library_bars()
        if threads:
            torch.set_num_threads(threads)
        run = load_run(run_dir)
        trained = "student" if who == "int8" else who
        model, temperature = calibration.load_with_temperature(run, trained)
        scale = 1 / temperature
        model = quantize_int8(model) if who == "int8" else model.eval()
        return cls(model, tokens.load_saved_tokenizer(run.require("tokenize")), scale, run.params.max_length,
                   run.params.truncation_head, run.params.eval_batch_size)

    def logits(self, texts, batch_size, on_done=None):
        """Calibrated logits for `texts`, in order."""
        if not texts:
            return np.empty((0, 2), dtype=np.float32)
        frame = pd.DataFrame({"text": texts, "label": 0})
        dataset = tokens.tokenize_splits({"reviews": frame}, self.tokenizer, self.max_length,
                                         self.truncation_head)["reviews"]
        logits = prediction.predict_logits(self.model, dataset, self.tokenizer, batch_size)
        if on_done:
            on_done(len(texts))
        return logits * self.scale

    positive_probability = staticmethod(sentiment.positive_probability)
