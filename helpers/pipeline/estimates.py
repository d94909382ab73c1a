"""Time told before it is spent: each stage's seconds, from its work and a rate measured on this device.

    estimates.announce(run, "train")   # before a stage's cell: prints two lines, updates estimates.json
    with estimates.measured(run, "distill_cpu"): ...   # the actual seconds of a part no notebook times alone

A stage's estimate is its notebook's time (`timings.json`): the FLOPs of the batches the loop makes (EpochSampler,
padded_length, planned_epochs, Cadence: called here) over the FLOP/s of an encoder layer timed on such a batch
(`Work.*_rate`: the teacher's on the device, the student's on the CPU) times EFFICIENCY, plus fixed costs that other
load lengthens; 05's CPU part also apart, as `distill_cpu`. Not modelled: several GPUs, downloads. Constants and
accuracy: docs/results.md, "Stage time estimates".
"""
import contextlib
import math
import os
import time
from collections import namedtuple
from functools import cached_property

import numpy as np
import torch
from transformers import AutoConfig, BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from helpers.core import models, precision
from helpers.core.accelerators import is_main_process
from helpers.core.files import DRIVE_MOUNT, write_json
from helpers.core.int8 import quantize_int8
from helpers.core.padding import padded_length
from helpers.data import extra_sets, imdb, unlabelled
from helpers.evaluate.scored_sets import cpu_samples
from helpers.pipeline.report_sections import read_run_json
from helpers.runs import layout
from helpers.serve import onnx_backend
from helpers.tokens.tokens import load_tokenized
from helpers.train import batching, checkpoints, optimization, trainer

WORDPIECES_PER_WORD = 1.33  # BERT's uncased word pieces per whitespace word of an IMDB review, before [CLS]/[SEP]
# a stage's FLOP/s over the timed layer's (it does more: embeddings, loss, AdamW; its batches can run faster)
EFFICIENCY = {("cpu", "train"): 0.9, ("cpu", "predict"): 2.0, ("gpu", "train"): 0.7, ("gpu", "predict"): 0.8}
STEP_SECONDS = {"cpu": 0.01, "gpu": 0.02}  # per optimizer step besides its FLOPs: Python, kernel launches
BATCH_SECONDS = {"cpu": 0.005, "gpu": 0.01}  # per prediction batch besides its FLOPs
ADAMW_SECONDS_PER_WEIGHT = {"cpu": 1.5e-9, "gpu": 1e-10}  # fused AdamW and clipping: memory-bound, every weight
KERNEL_START_SECONDS = 8.0  # a notebook kernel's start, the project's imports and the set-up cell
CELL_SECONDS = {"data": 1.0, "tokenize": 1.0, "train": 2.0, "evaluate": 2.0, "distill": 3.0}  # figures, tables, peeks
MODEL_LOAD_SECONDS = 0.5  # building a model object, besides reading its weights
DISK_BYTES_PER_S, DRIVE_BYTES_PER_S = 400e6, 40e6  # weights read or written: a local disk, Google Drive (assumed)
TOKENIZE_TOKENS_PER_S = 400e3  # the fast tokenizer, whole reviews
BASELINE_SECONDS_PER_REVIEW = 2e-3  # TF-IDF fit and the 7 logistic regressions of the C search, per training review
CHECKPOINT_BYTES_PER_WEIGHT = 12  # fp32 weights and AdamW's two moments
ONNX_SECONDS_PER_WEIGHT = 1.6e-7  # the student's ONNX export: traced, optimized, quantized (docs/results.md)
MAX_TIMED_TOKENS = {"cpu": 2048, "gpu": 65536}  # tokens of the timed batch: on a CPU, few enough to time it in a second
CPU_BOUND_PARTS = ("kernel start and imports", "figures and tables", "tokenizing", "TF-IDF baseline",  # slower
                   "unlabelled tokenized", "model load", "model loads")  # on a busy machine


class Shape(namedtuple("Shape", "layers hidden intermediate heads parameters weights")):
    """A model's encoder shape, its parameters (all: the bytes saved) and its encoder's weights (the FLOPs)."""

    def forward_flops(self, batches, layers=None):
        """FLOPs of a forward pass over `batches` ((rows, padded length) arrays) through all layers, or `layers`."""
        rows, length = batches
        per_layer = rows * (2.0 * self.weights / self.layers * length + 4.0 * self.hidden * length ** 2.0)
        return float(np.sum(per_layer)) * (self.layers if layers is None else layers)


def shape_of(config, layers=None):
    """A transformers config (BERT or DistilBERT names) as a Shape, with only `layers` of its layers if given."""
    layers, hidden = layers or config.num_hidden_layers, config.hidden_size
    inner = getattr(config, "intermediate_size", None) or config.hidden_dim
    weights = layers * (4 * hidden + 2 * inner) * hidden  # biases and LayerNorms: 9 x hidden + inner a layer
    parameters = (config.vocab_size + config.max_position_embeddings) * hidden + weights + layers * (9 * hidden + inner)
    return Shape(layers, hidden, inner, config.num_attention_heads, parameters, weights)


def model_config(name):
    return BertConfig(**models.TINY_CONFIG) if name == models.TINY else AutoConfig.from_pretrained(models.model_source(name))


def batches(lengths, batch_size, max_length, order=None):
    """(rows, padded length) arrays of `lengths`' batches cut at max_length, in `order` (default: shortest first)."""
    capped = np.minimum(np.asarray(lengths, dtype=float), max_length)
    ordered = capped[np.argsort(capped, kind="stable") if order is None else np.asarray(order, dtype=int)]
    chunks = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    return np.array([len(c) for c in chunks], float), np.array([padded_length(c.max()) for c in chunks], float)


def checkpoints_written(steps_per_epoch, epochs, settings, step_seconds, validation_seconds):
    """Checkpoints a training run writes: the loop's Cadence, asked as the loop asks it, on the estimated clock."""
    clock, written = [0.0], 0
    cadence = checkpoints.Cadence(settings.checkpoint_every, settings.checkpoint_minutes, lambda: clock[0])
    for step in range(1, steps_per_epoch * epochs):  # none after the last step
        clock[0] += step_seconds + (validation_seconds if step % steps_per_epoch == 0 else 0.0)
        if cadence.due(step, epoch_end=step % steps_per_epoch == 0):
            written += 1
            cadence.restart()
    return written


def layer_seconds(shape, rows, length, mixed="no", device="cpu", backward=False, int8=False, repeats=5):
    """Best time of one encoder layer of `shape` over `rows` x `length` tokens on `device`, as the stages run it."""
    config = BertConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_attention_heads=shape.heads,
                        attention_probs_dropout_prob=0.0, attn_implementation="sdpa")  # as the stages train (config.py)
    layer = quantize_int8(BertLayer(config).eval()) if int8 else BertLayer(config).to(device).train(backward)
    hidden = torch.randn(rows, length, shape.hidden, device=device, requires_grad=backward)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed, torch.float32)

    def one_pass():
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32), torch.inference_mode(not backward):
            out = layer(hidden)
        out.float().sum().backward() if backward else None
    return precision.best_seconds(one_pass, device, repeats)


class Work:
    """What one run's stages will do on this machine, and how fast it does it: measured when first asked."""

    def __init__(self, run, device=None):
        self.run, self.params, self.device = run, run.params, device or precision.detect_device()
        self.kind = "cpu" if self.device.kind == "cpu" else "gpu"
        self.mixed = precision.choose_precision(self.params.precision, self.device).mixed_precision
        self.contention = max(1.0, os.getloadavg()[0] / os.cpu_count())  # runnable processes per core, or 1
        self.disk_rate = DRIVE_BYTES_PER_S if run.dir.resolve().is_relative_to(DRIVE_MOUNT) else DISK_BYTES_PER_S

    teacher = cached_property(lambda self: shape_of(model_config(self.params.model)))
    train_rate = cached_property(lambda self: self._rate(self.params.batch_size, backward=True))
    predict_rate = cached_property(lambda self: self._rate(self.params.eval_batch_size))
    cpu_rate = cached_property(lambda self: self._rate(self.params.eval_batch_size, on_cpu=True))
    int8_rate = cached_property(lambda self: self._rate(self.params.eval_batch_size, on_cpu=True, int8=True))

    @cached_property
    def student(self):
        if self.params.student_model == models.DISTIL_FROM_TEACHER:  # every other teacher layer: 0, 2, 4...
            return shape_of(model_config(self.params.model), layers=math.ceil(self.teacher.layers / 2))
        return shape_of(model_config(self.params.student_model))

    def _rate(self, batch_size, on_cpu=False, **how):
        train, shape = self.lengths["train"], self.student if on_cpu else self.teacher
        length = int(padded_length(np.median(np.minimum(train, self.params.max_length)) if len(train) else 8))
        rows = max(1, min(batch_size, MAX_TIMED_TOKENS["cpu" if on_cpu else self.kind] // length))
        where = {"device": "cpu"} if on_cpu else {"mixed": self.mixed, "device": self.device.kind}
        flops = shape.forward_flops((np.array([float(rows)]), np.array([float(length)])), layers=1)
        return (3.0 if how.get("backward") else 1.0) * flops / layer_seconds(shape, rows, length, **where, **how)

    def predict(self, shape, lengths, on="device"):
        """Seconds to predict `lengths` on the device in the run's precision, or on the CPU in fp32 ('cpu') or int8."""
        kind, rate = (self.kind, self.predict_rate) if on == "device" else ("cpu", getattr(self, f"{on}_rate"))
        split = batches(lengths, self.params.eval_batch_size, self.params.max_length)
        return shape.forward_flops(split) / (rate * EFFICIENCY[kind, "predict"]) + len(split[0]) * BATCH_SECONDS[kind]

    def train(self, role, lengths):
        """({part: seconds}, the work in words) of the teacher's or student's training, its saved models included."""
        shape, settings = getattr(self, role), trainer.TrainSettings.from_params(self.params, student=role == "student")
        order = batching.EpochSampler(lengths, settings.batch_size, settings.seed, settings.group_by_length).order(1)
        split = batches(lengths, settings.batch_size, self.params.max_length, order)
        steps_per_epoch, epochs = optimization.planned_epochs(len(split[0]), settings)
        steps = steps_per_epoch * epochs
        seconds = (3 * epochs * shape.forward_flops(split) / (self.train_rate * EFFICIENCY[self.kind, "train"])
                   + steps * (STEP_SECONDS[self.kind] + shape.parameters * ADAMW_SECONDS_PER_WEIGHT[self.kind]))
        validating = self.predict(shape, self.lengths["val"])
        saves = checkpoints_written(steps_per_epoch, epochs, settings, seconds / steps, validating)
        words = (f"{len(lengths):,} reviews x {np.minimum(lengths, self.params.max_length).mean():.0f} tokens x {epochs} "
                 f"epoch{'s' * (epochs > 1)} ({steps:,} steps) of a {shape.layers}-layer, {shape.hidden}-wide model; "
                 f"{saves} checkpoint{'s' * (saves != 1)} of {CHECKPOINT_BYTES_PER_WEIGHT * shape.parameters / 1e6:,.0f} MB")
        return {"training": seconds, "validation": epochs * validating,  # the student is also saved once more
                "checkpoints": saves * CHECKPOINT_BYTES_PER_WEIGHT * shape.parameters / self.disk_rate,
                "saved models": (epochs + (role == "student")) * 4 * shape.parameters / self.disk_rate}, words

    def load(self, shape):  # seconds to build a model and read its fp32 weights
        return MODEL_LOAD_SECONDS + 4 * shape.parameters / self.disk_rate

    @cached_property
    def lengths(self):
        """{name: tokens of each review, uncut} for train, val, test, unlabelled and every extra test set: exact once
        the tokenize stage has run; before, counted from words (the committed sample's, spread to the sizes asked)."""
        params, run_dir = self.params, self.run.dir
        sets = {name: _from_words(frame["text"]) for name, frame in extra_sets.load_extra_tests(params.extra_test).items()}
        if (run_dir / layout.DONE_MARKERS["tokenize"]).exists():
            drawn = run_dir / "data" / "unlabelled.parquet"  # none when n_unlabelled is 0
            sets["unlabelled"] = _from_words(imdb.read_table(drawn)["text"] if drawn.exists() else [])
            sets.update({name: np.asarray(ds["full_length"]) for name, ds in load_tokenized(run_dir / "tokenize").items()})
            return sets
        sample, shipped = imdb.load_imdb("sample"), _from_words(unlabelled.load_unlabelled("sample")["text"])
        sizes = {name: len(frame) for name, frame in sample.items()} if params.data == "sample" else imdb.IMDB_SIZES
        n_unlabelled = len(shipped) if params.unlabelled == "sample" else imdb.IMDB_SIZES["unlabelled"]  # for 'none': all
        n_train, pool = params.n_train or sizes["train"], np.concatenate([_from_words(f["text"]) for f in sample.values()])
        n_val = math.ceil(n_train * params.val_fraction)
        return {**sets, "train": resized(pool, n_train - n_val), "val": resized(pool, n_val),
                "test": resized(pool, params.n_test or sizes["test"]),
                "unlabelled": resized(shipped, n_unlabelled if params.n_unlabelled is None else params.n_unlabelled)}


def _from_words(texts):
    return np.array([math.ceil(WORDPIECES_PER_WORD * len(str(text).split())) + 2 for text in texts], dtype=float)


def resized(lengths, n):  # `n` lengths spread as `lengths` are (its quantiles): a stand-in of any size
    return np.quantile(np.asarray(lengths), (np.arange(n) + 0.5) / max(n, 1)) if n else np.zeros(0)


def stage_parts(work, stage):
    """({part: seconds}, a few words on the work) of one stage's notebook on this machine."""
    p, lengths, teacher = work.params, work.lengths, work.teacher
    extra = [name for name in lengths if name not in ("train", "val", "test", "unlabelled")]
    tested = np.concatenate([lengths[name] for name in ("val", "test", *extra)])
    learnt = np.concatenate([lengths["train"], lengths["unlabelled"]])
    baseline = BASELINE_SECONDS_PER_REVIEW * len(lengths["train"])
    parts = {"kernel start and imports": KERNEL_START_SECONDS, "figures and tables": CELL_SECONDS.get(stage, 0.0)}
    if stage == "data":
        words = f"{sum(len(lengths[n]) for n in ('train', 'val', 'test')):,} reviews split"
    elif stage == "tokenize":
        split = np.concatenate([lengths[n] for n in ("train", "val", "test")])
        parts["tokenizing"] = MODEL_LOAD_SECONDS + split.sum() / TOKENIZE_TOKENS_PER_S
        words = f"{len(split):,} reviews, {split.sum() / 1e6:.2f} M tokens"
    elif stage == "train":
        training, words = work.train("teacher", lengths["train"])
        parts.update({"model loads": 2 * work.load(teacher), **training})
    elif stage == "evaluate":
        parts.update({"model load": work.load(teacher), "predictions": work.predict(teacher, tested),
                      "TF-IDF baseline": baseline, "saved model": 4 * teacher.parameters / work.disk_rate})
        words = f"{len(tested):,} reviews predicted ({len(lengths['val']):,} validation, {', '.join(['test', *extra])})"
    elif stage == "distill":
        training, words = work.train("student", learnt)
        parts.update({"model loads": 2 * work.load(teacher) + 4 * work.load(work.student),
                      "unlabelled tokenized": lengths["unlabelled"].sum() / TOKENIZE_TOKENS_PER_S,
                      "teacher logits": work.predict(teacher, learnt), **training,
                      "predictions": work.predict(work.student, tested), "TF-IDF baseline": baseline,
                      "CPU part": sum(stage_parts(work, "distill_cpu")[0].values())})
    elif stage == "distill_cpu":  # model_comparison's own draw of the reviews scored and timed on the CPU
        student, sets = work.student, ("test", *extra)
        drawn = {name: cpu_samples(len(lengths[name]), p.n_cpu_test, p.n_speed, p.seed) for name in sets}
        samples = np.concatenate([lengths[name][scored] for name, (scored, _) in drawn.items()])
        timed = lengths["test"][drawn["test"][1]]
        int8, fp32 = work.predict(student, samples, on="int8"), work.predict(student, timed, on="cpu")
        parts = {"int8 student on the CPU samples": work.load(student) + int8,
                 "fp32 teacher and student timed": work.predict(teacher, timed, on="cpu") + fp32}
        if onnx_backend.installed():  # the export extra: the student's ONNX copies and their rows
            parts["ONNX Runtime copies: export, int8 on the samples, fp32 timed"] = \
                ONNX_SECONDS_PER_WEIGHT * student.parameters + int8 + fp32
        words = f"int8 student on {len(samples):,} reviews, the models timed on {len(timed):,}"
    else:
        raise ValueError(f"no estimate for stage {stage!r}; stages: {', '.join((*layout.STAGES, 'distill_cpu'))}")
    return {name: float(seconds) * (work.contention if name in CPU_BOUND_PARTS else 1.0)
            for name, seconds in parts.items()}, words


def estimate(run, stage, device=None, work=None):
    """The estimate of `stage` for `run` on this machine, as estimates.json holds it."""
    work = work or Work(run, device)
    parts, words = stage_parts(work, stage)
    on_cpu = stage == "distill_cpu" or work.kind == "cpu"
    rate = {"train": "train_rate", "distill": "train_rate", "evaluate": "predict_rate", "distill_cpu": "cpu_rate"}.get(stage)
    return {"seconds": round(sum(parts.values()), 1), "parts": {k: round(v, 1) for k, v in parts.items()},
            "work": words, "device": f"this CPU ({os.cpu_count()} cores)" if on_cpu else f"this GPU ({work.device.name})",
            "precision": "fp32 and int8" if stage == "distill_cpu" else {"no": "fp32"}.get(work.mixed, work.mixed),
            **({"measured_gflops": float(f"{getattr(work, rate) / 1e9:.3g}")} if rate else {}),  # the stages with models
            "made": time.strftime("%Y-%m-%d %H:%M:%S")}


def announce(run, stage, device=None):
    """Print the estimate of `stage` (05's also of its CPU part), record it in estimates.json and return it."""
    if stage == "train" and device is None and torch.cuda.device_count() > 1:  # counted without initialising CUDA
        print("train: no estimate with several GPUs (timing a layer would initialise CUDA, which notebook_launcher refuses)")
        return {}
    work = Work(run, device)
    found = {name: estimate(run, name, work=work) for name in ([stage, "distill_cpu"] if stage == "distill" else [stage])}
    print("\n".join(describe(name, entry) for name, entry in found.items()), flush=True)
    save(run.dir, found)
    return found


def describe(stage, entry):
    """Two lines: how long, where (and the rate timed there); then the work and the largest parts."""
    ahead, gflops = entry["seconds"] - entry["parts"].get("kernel start and imports", 0.0), entry.get("measured_gflops")
    largest = sorted(entry["parts"].items(), key=lambda item: -item[1])[:3]
    rate = "" if gflops is None else \
        f"; an encoder layer timed here ran at {f'{gflops:,.0f}' if gflops >= 10 else f'{gflops:.2g}'} GFLOP/s"
    return (f"{stage}: about {duration(ahead)} on {entry['device']} ({entry['precision']}{rate})\n    {entry['work']}; "
            "most of it: " + ", ".join(f"{name} {duration(seconds)}" for name, seconds in largest))


def duration(seconds):
    return f"{max(seconds, 1):.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def read_estimates(run_dir):  # {stage: estimate} recorded so far in a run folder ({} before any)
    return read_run_json(run_dir, layout.ESTIMATES_FILE) or {}


def save(run_dir, entries):
    """Merge `entries` into the run's estimates.json (written whole, atomically), by the first process only."""
    if is_main_process():
        write_json(run_dir / layout.ESTIMATES_FILE, {**read_estimates(run_dir), **entries})


@contextlib.contextmanager
def measured(run, stage):
    """Record the seconds a block takes (a part no notebook times alone) as `measured_seconds` of `stage`."""
    started = time.perf_counter()
    yield
    save(run.dir, {stage: {**read_estimates(run.dir).get(stage, {}), "measured_seconds": round(time.perf_counter() - started, 1)}})
