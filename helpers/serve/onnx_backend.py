"""An exported model (helpers.export) served by ONNX Runtime, with neither torch nor transformers: its ONNX copies,
`tokenizer.json` (read by `tokenizers`) and `serving.json` (the run's truncation, the padding id, which file is which).
"""
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.core.padding import padded_length
from helpers.serve.classifier import Classifier
from helpers.tokens.truncation import truncate

SERVING_FILE = "serving.json"
TOKENIZER_FILE = "tokenizer.json"


class ExportError(ValueError):
    """An export folder that cannot be served; the message says what is missing and how to make it."""


def installed():
    """Whether onnxruntime (the export extra: `pip install -e .[export]`) can be imported here."""
    return importlib.util.find_spec("onnxruntime") is not None


def is_export_folder(path):
    return (Path(path) / SERVING_FILE).is_file()


def model_file(folder, serving, model):
    """The ONNX file serving `model` ('student', 'int8', 'teacher'), or ExportError naming those there are."""
    files = serving["files"]
    if model not in files:
        hint = " (export the teacher too: python -m helpers.export RUN_DIR --teacher)" if model == "teacher" else ""
        raise ExportError(f"{folder} has no {model!r} model; it has {', '.join(files)}{hint}")
    path = Path(folder) / files[model]
    if not path.is_file():
        raise ExportError(f"{path} is missing; export the run again with `python -m helpers.export`")
    return path


def make_session(path, threads=None):
    """An ONNX Runtime session on the CPU; `threads` None lets ONNX Runtime use every core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def padded_batch(ids_list, pad_id):
    """input_ids and attention_mask arrays for reviews of token ids, padded as the torch loaders pad (core.padding)."""
    lengths = np.array([len(ids) for ids in ids_list])
    input_ids = np.full((len(ids_list), padded_length(lengths.max())), pad_id, dtype=np.int64)
    for row, ids in enumerate(ids_list):
        input_ids[row, :len(ids)] = ids
    attention_mask = np.arange(input_ids.shape[1]) < lengths[:, None]
    return {"input_ids": input_ids, "attention_mask": attention_mask.astype(np.int64)}


def session_logits(session, ids_list, pad_id, batch_size, on_batch=None):
    """Logits for reviews of token ids, in order, batched shortest first (as predict_logits); then `on_batch(n)`."""
    ids_list = list(ids_list)  # a datasets column (datasets 4, Colab's) refuses numpy integers as indices
    order = np.argsort([len(ids) for ids in ids_list], kind="stable")
    logits = np.empty((len(ids_list), 2), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        logits[rows] = session.run(["logits"], padded_batch([ids_list[i] for i in rows], pad_id))[0]
        if on_batch:
            on_batch(len(rows))
    return logits


@dataclass
class ExportedClassifier(Classifier):
    """One ONNX copy of an export folder (the temperature folded in), its tokenizer and its truncation."""
    session: object
    tokenizer: object
    serving: dict
    engine = "ONNX Runtime"

    @property
    def batch_size(self):
        return self.serving["batch_size"]

    @classmethod
    def load(cls, folder, model="student", threads=None):
        from tokenizers import Tokenizer

        if not is_export_folder(folder):
            raise ExportError(f"{folder} holds no {SERVING_FILE}: it is not an export folder; "
                              "make one with `python -m helpers.export RUN_DIR`")
        serving = json.loads((Path(folder) / SERVING_FILE).read_text())
        session = make_session(model_file(folder, serving, model), threads)
        tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE))
        tokenizer.no_truncation()  # the cut is helpers.tokens.truncation's, head+tail where the run used it
        tokenizer.no_padding()
        return cls(session, tokenizer, serving)

    def token_ids(self, texts):
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [truncate(item.ids, self.serving["max_length"], self.serving["truncation_head"]) for item in encoded]

    def logits(self, texts, batch_size, on_batch=None):
        return session_logits(self.session, self.token_ids(texts), self.serving["pad_token_id"], batch_size, on_batch)
