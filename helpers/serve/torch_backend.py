"""A run folder's model scoring raw texts with PyTorch: cut as the run's training reviews were, predicted through the
one prediction path, calibrated with the temperature the run fitted."""
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from helpers.core.progress import quiet_library_bars
from helpers.evaluate import calibration
from helpers.runs.run_folder import load_run
from helpers.serve.classifier import Classifier
from helpers.tokens import tokens
from helpers.train import prediction


@dataclass
class TorchClassifier(Classifier):
    model: torch.nn.Module
    tokenizer: object
    scale: float  # calibrated logits = the model's logits * scale
    max_length: int
    truncation_head: float
    batch_size: int
    engine = "PyTorch"

    @classmethod
    def load(cls, folder, model="student", threads=None):
        """'int8' is the student quantized as the distill stage does."""
        from helpers.core.int8 import quantize_int8

        quiet_library_bars()
        if threads:
            torch.set_num_threads(threads)
        run = load_run(folder)
        trained, temperature = calibration.load_with_temperature(run, "student" if model == "int8" else model)
        trained = quantize_int8(trained) if model == "int8" else trained.eval()
        return cls(trained, tokens.load_saved_tokenizer(run.require("tokenize")), 1 / temperature,
                   run.params.max_length, run.params.truncation_head, run.params.eval_batch_size)

    def logits(self, texts, batch_size, on_batch=None):
        if not texts:
            return np.empty((0, 2), dtype=np.float32)
        reviews = {"reviews": pd.DataFrame({"text": texts, "label": 0})}
        dataset = tokens.tokenize_splits(reviews, self.tokenizer, self.max_length, self.truncation_head)["reviews"]
        logits = prediction.predict_logits(self.model, dataset, self.tokenizer, batch_size)
        if on_batch:
            on_batch(len(texts))
        return logits * self.scale
