"""The cost model behind the stage estimates (helpers.pipeline.estimates): what a review costs a model, and how fast
this machine goes.

- FLOPs: a review padded to n tokens costs 2 x W x n + 4 x layers x hidden x n² FLOPs forward (W: the
  encoder's weights, embeddings excluded; the second term is attention); training costs three times that
  (forward and backward). Reviews are batched as the stages batch them (`batches`), so padding counts.
- Rates: one encoder layer of the model, timed on the device on a batch the stage would run, in the run's
  precision (`layer_seconds`: forward and backward to train, forward to predict, int8 for the quantized
  student), times EFFICIENCY. Not a bare matrix product (`precision.matmul_seconds`): on a CPU with AMX a
  bf16 product runs about ten times as fast as the model's bf16 training does, since attention, GELU,
  LayerNorm and dropout stay slow, so its ratio to a stage's speed changes from one device to the next.
- Everything else: named constants below. Where each comes from, and how close the estimates come:
  docs/results.md, "Stage time estimates".
"""
import contextlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from helpers.runs import layout

WORDPIECES_PER_WORD = 1.33  # BERT's uncased word pieces per whitespace word of an IMDB review, before [CLS]/[SEP]
# a whole stage's FLOP/s as a multiple of the timed layer's: below 1 where a stage does more than its encoder layers
# (embeddings, loss, AdamW, Python), above 1 where its batches run faster than the timed one (a CPU's 64-review
# prediction batches); the CPU's fitted on this project's runs, the GPU's a guess until measured
EFFICIENCY = {("cpu", "train"): 0.9, ("cpu", "predict"): 2.0, ("gpu", "train"): 0.7, ("gpu", "predict"): 0.8}
STEP_SECONDS = {"cpu": 0.01, "gpu": 0.02}  # per optimizer step besides its FLOPs: Python, kernel launches
BATCH_SECONDS = {"cpu": 0.005, "gpu": 0.01}  # per prediction batch besides its FLOPs
ADAMW_SECONDS_PER_WEIGHT = {"cpu": 1.5e-9, "gpu": 1e-10}  # fused AdamW and clipping: memory-bound, every weight
KERNEL_START_SECONDS = 8.0  # a notebook kernel's start, the project's imports and the set-up cell
CELL_SECONDS = {"data": 1.0, "tokenize": 1.0, "train": 2.0, "evaluate": 2.0, "distill": 3.0}  # figures, tables, peeks
MODEL_LOAD_SECONDS = 0.5  # building a model object, besides reading its weights
DISK_BYTES_PER_S = 400e6  # writing and hashing a checkpoint, reading weights, on a local disk
DRIVE_BYTES_PER_S = 40e6  # the same on a mounted Google Drive (an assumption, not measured)
DOWNLOAD_BYTES_PER_S = 50e6  # a hub download on Colab (an assumption, not measured)
HUB_DATA_BYTES = 130e6  # stanfordnlp/imdb's train, test and unsupervised Parquet files
TOKENIZE_TOKENS_PER_S = 400e3  # the fast tokenizer, whole reviews
BASELINE_SECONDS_PER_REVIEW = 2e-3  # TF-IDF fit and the 7 logistic regressions of the C search, per training review
SENTENCE_CHECK_SECONDS = 2e-7  # one unlabelled review searched for one extra-test sentence (helpers.data.unlabelled)
CHECKPOINT_BYTES_PER_WEIGHT = 12  # fp32 weights and AdamW's two moments
ONNX_SECONDS_PER_WEIGHT = 1.6e-7  # the student's ONNX export: traced, optimized, quantized (docs/results.md)
MAX_TIMED_TOKENS = {"cpu": 2048, "gpu": 65536}  # tokens of the timed batch: on a CPU, few enough to time it in a second
STAND_IN_SIZES = {"train": 2000, "test": 1000, "unlabelled": 3000}  # the committed sample's, when 'none' = all
HUB_SIZES = {"train": 25000, "test": 25000, "unlabelled": 50000}  # IMDB's, for any other data when 'none'


@dataclass(frozen=True)
class Shape:
    """What the estimates read of a model: its encoder's shape and its parameter count."""
    layers: int
    hidden: int
    intermediate: int
    heads: int
    parameters: int  # all of them, embeddings included: bytes saved, weights AdamW updates

    @property
    def weights(self):
        return self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.intermediate)

    def forward_flops(self, batches, layers=None):
        """FLOPs of a forward pass over `batches` ((rows, padded length) arrays) through all layers, or `layers`."""
        rows, length = batches
        per_layer = rows * (2.0 * self.weights / self.layers * length + 4.0 * self.hidden * length ** 2.0)
        return float(np.sum(per_layer)) * (self.layers if layers is None else layers)


def shape_of(config):
    """A transformers config (BERT or DistilBERT names) as a Shape."""
    layers, hidden = config.num_hidden_layers, config.hidden_size
    inner = getattr(config, "intermediate_size", None) or config.hidden_dim
    embeddings = (config.vocab_size + config.max_position_embeddings) * hidden
    return Shape(layers, hidden, inner, config.num_attention_heads,
                 embeddings + layers * (4 * hidden ** 2 + 2 * hidden * inner + 9 * hidden + inner))


def every_other_layer(shape):
    """The student built from every other teacher layer (models.distil_from_teacher)."""
    kept = math.ceil(shape.layers / 2)
    per_layer = (shape.parameters - _embedding_parameters(shape)) // shape.layers
    return Shape(kept, shape.hidden, shape.intermediate, shape.heads, _embedding_parameters(shape) + kept * per_layer)


def _embedding_parameters(shape):
    return shape.parameters - shape.layers * (4 * shape.hidden ** 2 + 2 * shape.hidden * shape.intermediate
                                              + 9 * shape.hidden + shape.intermediate)


def model_config(name):
    from transformers import AutoConfig, BertConfig

    from helpers.core import models

    if name == models.TINY:
        return BertConfig(**models.TINY_CONFIG)
    return AutoConfig.from_pretrained(models.model_source(name))


def batches(lengths, batch_size, max_length, order=None):
    """(rows, padded length) of each batch of `lengths` (tokens per review) cut at max_length, in `order`
    (default: shortest first, as predictions run), each padded to a multiple of 8 (helpers.train.batching)."""
    from helpers.train.batching import PAD_TO_MULTIPLE

    capped = np.minimum(np.asarray(lengths, dtype=float), max_length)
    ordered = capped[np.argsort(capped, kind="stable") if order is None else np.asarray(order, dtype=int)]
    chunks = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    rows = np.array([len(c) for c in chunks], dtype=float)
    longest = np.array([c.max() for c in chunks]) if chunks else np.zeros(0)
    return rows, np.ceil(longest / PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE


def training_order(lengths, batch_size, seed, group_by_length):
    """Epoch 1's order of the training reviews, as the loop's sampler draws it."""
    from helpers.train.batching import length_grouped_order

    generator = torch.Generator().manual_seed(seed)
    if group_by_length:
        return length_grouped_order(list(lengths), batch_size, generator)
    return torch.randperm(len(lengths), generator=generator).tolist()


def checkpoints_written(steps_per_epoch, epochs, settings, step_seconds, validation_seconds):
    """Checkpoints one training run writes: its steps walked past the loop's own helpers.train.checkpoints.Cadence
    on a clock that moves by the estimated seconds of each step and of each epoch's validation."""
    from helpers.train.checkpoints import Cadence

    clock = [0.0]
    cadence, written, step = Cadence(settings.checkpoint_every, settings.checkpoint_minutes, lambda: clock[0]), 0, 0
    for epoch in range(1, epochs + 1):
        for inside in range(steps_per_epoch):
            step, clock[0] = step + 1, clock[0] + step_seconds
            last = inside == steps_per_epoch - 1
            clock[0] += validation_seconds if last else 0.0
            if (not last or epoch < epochs) and cadence.due(step, epoch_end=last):  # none after the last epoch
                written += 1
                cadence.restart()
    return written


def layer_seconds(shape, rows, length, mixed="no", device="cpu", backward=False, int8=False, repeats=5):
    """Best time of a few passes of one encoder layer of `shape` over `rows` x `length` tokens on `device`, as the
    stages run them: forward only (prediction, inference mode), or forward and backward with dropout (training);
    under autocast in `mixed` precision ('no', 'bf16', 'fp16', as Accelerate names them), or with its linear
    layers in int8 (`helpers.core.int8.quantize_int8`, on the CPU). The first pass warms up."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    config = BertConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_attention_heads=shape.heads,
                        attention_probs_dropout_prob=0.0, attn_implementation="sdpa")  # as the stages train (config.py)
    layer = BertLayer(config).to(device).train(backward)
    if int8:
        from helpers.core.int8 import quantize_int8

        layer = quantize_int8(layer)
    hidden = torch.randn(rows, length, shape.hidden, device=device, requires_grad=backward)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed, torch.float32)
    best = float("inf")
    for _ in range(repeats + 1):
        _synchronize(device)
        started = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32), \
                (contextlib.nullcontext() if backward else torch.inference_mode()):
            out = layer(hidden)
        if backward:
            out.float().sum().backward()
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def _synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def layer_rate(shape, rows, length, **how):
    """FLOP/s one encoder layer reaches on this device, timed (`layer_seconds`) on a batch the stage would run:
    forward FLOPs over the time of a forward pass, three times them over that of a training pass."""
    flops = shape.forward_flops((np.array([float(rows)]), np.array([float(length)])), layers=1)
    return (3.0 if how.get("backward") else 1.0) * flops / layer_seconds(shape, rows, length, **how)


def timed_batch(lengths, batch_size, max_length, max_tokens):
    """(rows, length) of the batch the device is timed on: the reviews' median length cut at max_length and padded
    as the stages pad (helpers.train.batching), `batch_size` rows, fewer where that exceeds `max_tokens`."""
    from helpers.train.batching import PAD_TO_MULTIPLE

    median = np.median(np.minimum(lengths, max_length)) if len(lengths) else max_length
    length = int(math.ceil(median / PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE)
    return max(1, min(batch_size, max_tokens // length)), length


def needs_download(name):
    """A hub model whose weights are not in the local cache (each Colab runtime starts with none)."""
    from helpers.core.models import DISTIL_FROM_TEACHER, MINILM, TINY

    if name in (MINILM, TINY, DISTIL_FROM_TEACHER) or os.path.exists(os.path.expanduser(name)):
        return False
    from huggingface_hub import try_to_load_from_cache

    return not isinstance(try_to_load_from_cache(name, "model.safetensors"), str)


def review_lengths(run):
    """{name: tokens of each review, uncut} for train, val, test, unlabelled and every extra test set.

    Exact once the tokenize stage has run; before, counted from the words of the run's own reviews
    (data stage) or, before that, of the committed sample's, drawn to the sizes the parameters ask."""
    from helpers.data import extra_sets, imdb, unlabelled

    params = run.params
    sets = {name: _from_words(frame["text"]) for name, frame in extra_sets.load_extra_tests(params.extra_test).items()}
    if (run.dir / layout.DONE_MARKERS["tokenize"]).exists():
        from helpers.tokens.tokens import load_tokenized

        sets.update({name: np.asarray(ds["full_length"]) for name, ds in load_tokenized(run.dir / "tokenize").items()})
    elif (run.dir / layout.DONE_MARKERS["data"]).exists():
        sets.update({name: _from_words(frame["text"]) for name, frame in imdb.load_splits(run.dir / "data").items()})
    else:
        sample = {name: _from_words(frame["text"]) for name, frame in imdb.load_imdb("sample").items()}
        sizes = STAND_IN_SIZES if params.data == "sample" else HUB_SIZES
        n_train = params.n_train or sizes["train"]
        n_val = math.ceil(n_train * params.val_fraction)
        drawn = {"train": n_train - n_val, "val": n_val, "test": params.n_test or sizes["test"]}
        sets.update({name: resized(sample["test" if name == "test" else "train"], n) for name, n in drawn.items()})
    unlabelled_file = run.dir / "data" / "unlabelled.parquet"
    if params.n_unlabelled == 0:
        sets["unlabelled"] = np.zeros(0)
    elif unlabelled_file.exists():
        sets["unlabelled"] = _from_words(imdb.read_table(unlabelled_file)["text"])
    else:
        n = params.n_unlabelled or (STAND_IN_SIZES if params.unlabelled == "sample" else HUB_SIZES)["unlabelled"]
        sets["unlabelled"] = resized(_from_words(unlabelled.load_unlabelled("sample")["text"]), n)
    return sets


def _from_words(texts):
    return np.array([math.ceil(WORDPIECES_PER_WORD * len(str(text).split())) + 2 for text in texts], dtype=float)


def resized(lengths, n):
    """`n` lengths spread as `lengths` are (its quantiles): a stand-in of any size."""
    return np.quantile(np.asarray(lengths), (np.arange(n) + 0.5) / max(n, 1)) if n else np.zeros(0)

