"""Time told before it is spent: each stage's seconds, from its work and a rate measured on this device.

    estimates.announce(run, "train")   # before a stage's cell: prints two lines, updates estimates.json
    with estimates.measured(run, "distill_cpu"): ...   # the actual seconds of a part no notebook times alone

A stage's estimate is the time of its notebook (what `timings.json` records) as a sum of parts: its work
on the device (FLOPs of the reviews it trains on and predicts, over a rate timed here: helpers.pipeline.costs) and
fixed costs (the kernel's start, model loads, checkpoints and saved models, tokenizing, the TF-IDF
baseline, the notebook's own cells). 05's CPU part (`model_comparison.compare`: the int8 student on a sample of
every test set, the fp32 teacher and student timed on `n_speed` reviews) is estimated apart as
`distill_cpu`, on this CPU's own rates: on a GPU runtime it runs on Colab's 2 vCPUs. It is also a part of
`distill`. Other work on the machine is seen twice: in the timed rates, and in the load average, which
lengthens the fixed CPU parts. Not modelled: several GPUs (estimated as one), load that changes after
the estimate.
"""
import contextlib
import os
import time
from functools import cached_property

import numpy as np

from helpers.core import precision
from helpers.core.files import DRIVE_MOUNT, read_json, write_json
from helpers.pipeline import costs
from helpers.pipeline.costs import DISK_BYTES_PER_S, DRIVE_BYTES_PER_S, EFFICIENCY, batches
from helpers.runs import layout
from helpers.serve import onnx_backend

STAGES = (*layout.STAGES, "distill_cpu")  # distill_cpu: the CPU part of 05, also counted in distill


class Work:
    """What one run's stages will do on this machine, and how fast it does it: measured when first asked."""

    def __init__(self, run, device=None):
        from helpers.train.trainer import TrainSettings

        self.run, self.params = run, run.params
        self.device = device or precision.detect_device()
        self.kind = "cpu" if self.device.kind == "cpu" else "gpu"
        self.mixed = precision.choose_precision(self.params.precision, self.device).mixed_precision
        self.settings = {role: TrainSettings.from_params(self.params, student=role == "student")
                         for role in ("teacher", "student")}
        # runnable processes per core over the last minute (1 and under: this process has the CPU to itself)
        self.contention = max(1.0, os.getloadavg()[0] / os.cpu_count())
        on_drive = run.dir.resolve().is_relative_to(DRIVE_MOUNT)
        self.disk_rate = DRIVE_BYTES_PER_S if on_drive else DISK_BYTES_PER_S

    @cached_property
    def teacher(self):
        return costs.shape_of(costs.model_config(self.params.model))

    @cached_property
    def student(self):
        from helpers.core.models import DISTIL_FROM_TEACHER

        if self.params.student_model == DISTIL_FROM_TEACHER:
            return costs.every_other_layer(self.teacher)
        return costs.shape_of(costs.model_config(self.params.student_model))

    @cached_property
    def train_rate(self):
        """FLOP/s of a teacher layer training (forward and backward) on the device, in the run's precision."""
        return self._rate(self.params.batch_size, self.kind, backward=True)

    @cached_property
    def predict_rate(self):
        """FLOP/s of a teacher layer predicting on the device, in the run's precision."""
        return self._rate(self.params.eval_batch_size, self.kind)

    @cached_property
    def cpu_rate(self):
        """FLOP/s of a student layer predicting on this machine's CPU in fp32 (05's CPU part, notebook cells)."""
        return self._rate(self.params.eval_batch_size, "cpu", on_cpu=True)

    @cached_property
    def int8_rate(self):
        """FLOP/s of a student layer quantized to int8 predicting on the CPU (the int8 student)."""
        return self._rate(self.params.eval_batch_size, "cpu", on_cpu=True, int8=True)

    def _rate(self, batch_size, kind, on_cpu=False, **how):
        rows, length = costs.timed_batch(self.lengths["train"], batch_size, self.params.max_length,
                                         costs.MAX_TIMED_TOKENS[kind])
        if on_cpu:
            return costs.layer_rate(self.student, rows, length, device="cpu", **how)
        return costs.layer_rate(self.teacher, rows, length, mixed=self.mixed, device=self.device.kind, **how)

    @cached_property
    def lengths(self):
        """{split or extra test set: tokens of each review, uncut}, from the run's files where they exist."""
        return costs.review_lengths(self.run)

    # --- the parts -------------------------------------------------------------------------------

    def predict(self, shape, lengths, on="device"):
        """Seconds to predict `lengths` on the device (the run's precision) or on the CPU (fp32)."""
        kind, rate = (self.kind, self.predict_rate) if on == "device" else ("cpu", self.cpu_rate)
        split = batches(lengths, self.params.eval_batch_size, self.params.max_length)
        return (shape.forward_flops(split) / (rate * EFFICIENCY[kind, "predict"])
                + len(split[0]) * costs.BATCH_SECONDS[kind])

    def int8(self, lengths):
        """Seconds of the int8 student predicting `lengths` on the CPU (its layers timed quantized: linear layers in
        int8, attention and GELU in fp32, as `helpers.core.int8.quantize_int8` leaves them)."""
        split = batches(lengths, self.params.eval_batch_size, self.params.max_length)
        return (self.student.forward_flops(split) / (self.int8_rate * EFFICIENCY["cpu", "predict"])
                + len(split[0]) * costs.BATCH_SECONDS["cpu"])

    def train(self, role, lengths):
        """(seconds training, seconds validating, epochs, steps, checkpoints) of one training run of the
        teacher or the student."""
        from helpers.train.optimization import planned_epochs

        shape, settings = getattr(self, role), self.settings[role]
        order = costs.training_order(lengths, settings.batch_size, settings.seed, settings.group_by_length)
        split = batches(lengths, settings.batch_size, self.params.max_length, order)
        steps_per_epoch, epochs = planned_epochs(len(split[0]), settings)
        steps = steps_per_epoch * epochs
        compute = 3 * epochs * shape.forward_flops(split) / (self.train_rate * EFFICIENCY[self.kind, "train"])
        seconds = compute + steps * (costs.STEP_SECONDS[self.kind]
                                     + shape.parameters * costs.ADAMW_SECONDS_PER_WEIGHT[self.kind])
        validating = self.predict(shape, self.lengths["val"])
        saves = costs.checkpoints_written(steps_per_epoch, epochs, settings, seconds / steps, validating)
        return seconds, epochs * validating, epochs, steps, saves

    def load(self, shape, name=None):
        """Seconds to load a model: its weights read from disk, downloaded first when a hub model is not cached."""
        seconds = costs.MODEL_LOAD_SECONDS + 4 * shape.parameters / self.disk_rate
        return seconds + (4 * shape.parameters / costs.DOWNLOAD_BYTES_PER_S if name and costs.needs_download(name) else 0.0)

    def write(self, n_bytes):
        return n_bytes / self.disk_rate

    def baseline(self):
        return costs.BASELINE_SECONDS_PER_REVIEW * len(self.lengths["train"])

    def one_batch(self, shape, batch_size):
        """A notebook cell's forward pass over one batch on the CPU (helpers.train.training_views: the loss before training)."""
        lengths = self.lengths["train"][:batch_size]
        return shape.forward_flops(batches(lengths, batch_size, self.params.max_length)) / (
            self.cpu_rate * EFFICIENCY["cpu", "predict"])


# --- one stage -------------------------------------------------------------------------------------

# plain CPU work of a fixed size: on a machine busy with other work each takes longer (Work.contention)
CPU_BOUND_PARTS = ("kernel start and imports", "figures and tables", "unlabelled reviews drawn", "tokenizing",
                   "extra sets tokenized", "unlabelled tokenized", "TF-IDF baseline", "model load", "model loads")


def stage_parts(work, stage):
    """({part: seconds}, a few words on the work) of one stage's notebook on this machine."""
    parts, words = _parts(work, stage)
    return {name: float(seconds) * (work.contention if name in CPU_BOUND_PARTS else 1.0)
            for name, seconds in parts.items()}, words


def _parts(work, stage):
    p, lengths, teacher, student = work.params, work.lengths, work.teacher, None
    extra = [name for name in lengths if name not in ("train", "val", "test", "unlabelled")]
    tested = np.concatenate([lengths[name] for name in ("val", "test", *extra)])
    parts = {"kernel start and imports": costs.KERNEL_START_SECONDS, "figures and tables": costs.CELL_SECONDS.get(stage, 0.0)}
    if stage == "data":
        searched = min(2 * len(lengths["unlabelled"]), costs.HUB_SIZES["unlabelled"])
        parts["unlabelled reviews drawn"] = searched * sum(len(lengths[n]) for n in extra) * costs.SENTENCE_CHECK_SECONDS
        if p.data != "sample" and not os.path.exists(os.path.expanduser(p.data)):
            parts["download"] = costs.HUB_DATA_BYTES / costs.DOWNLOAD_BYTES_PER_S
        return parts, f"{sum(len(lengths[n]) for n in ('train', 'val', 'test')):,} reviews split"
    if stage == "tokenize":
        split = np.concatenate([lengths[n] for n in ("train", "val", "test")])
        parts["tokenizing"] = costs.MODEL_LOAD_SECONDS + split.sum() / costs.TOKENIZE_TOKENS_PER_S
        return parts, f"{len(split):,} reviews, {split.sum() / 1e6:.2f} M tokens"
    if stage == "train":
        seconds, validating, epochs, steps, saves = work.train("teacher", lengths["train"])
        parts.update({"model loads": work.load(teacher, p.model) + work.load(teacher),
                      "one batch in the notebook": work.one_batch(teacher, p.batch_size), "training": seconds,
                      "validation": validating,
                      "checkpoints": saves * work.write(costs.CHECKPOINT_BYTES_PER_WEIGHT * teacher.parameters),
                      "saved models": epochs * work.write(4 * teacher.parameters)})
        return parts, _training_words(p, teacher, lengths["train"], epochs, steps, saves)
    if stage == "evaluate":
        parts.update({"model load": work.load(teacher), "predictions": work.predict(teacher, tested),
                      "extra sets tokenized": sum(lengths[n].sum() for n in extra) / costs.TOKENIZE_TOKENS_PER_S,
                      "TF-IDF baseline": work.baseline(), "saved model": work.write(4 * teacher.parameters)})
        return parts, f"{len(tested):,} reviews predicted ({len(lengths['val']):,} validation, {', '.join(['test', *extra])})"
    student, learnt = work.student, np.concatenate([lengths["train"], lengths["unlabelled"]])
    if stage == "distill":
        seconds, validating, epochs, steps, saves = work.train("student", learnt)
        cpu_part, _ = _parts(work, "distill_cpu")
        parts.update({"model loads": 2 * work.load(teacher) + work.load(student, p.student_model) + 3 * work.load(student),
                      "unlabelled tokenized": lengths["unlabelled"].sum() / costs.TOKENIZE_TOKENS_PER_S,
                      "teacher logits": work.predict(teacher, learnt), "training": seconds,
                      "validation": validating,
                      "checkpoints": saves * work.write(costs.CHECKPOINT_BYTES_PER_WEIGHT * student.parameters),
                      "saved models": (epochs + 1) * work.write(4 * student.parameters),
                      "predictions": work.predict(student, tested), "TF-IDF baseline": work.baseline(),
                      "batches in the notebook": work.one_batch(teacher, p.batch_size) + 3 * work.one_batch(student, p.batch_size),
                      "CPU part": sum(cpu_part.values())})
        return parts, _training_words(p, student, learnt, epochs, steps, saves)
    if stage == "distill_cpu":
        from helpers.evaluate.scored_sets import cpu_samples

        sampled = {name: costs.resized(lengths[name], len(cpu_samples(len(lengths[name]), p.n_cpu_test, 0, 0)[0]))
                   for name in ("test", *extra)}
        timed = costs.resized(lengths["test"], min(p.n_speed, len(sampled["test"])))
        samples = np.concatenate(list(sampled.values()))
        parts = {"int8 student on the CPU samples": work.load(student) + work.int8(samples), "fp32 teacher and "
                 "student timed": work.predict(teacher, timed, on="cpu") + work.predict(student, timed, on="cpu")}
        if onnx_backend.installed():  # the export extra: the student's ONNX copies and their rows
            parts["ONNX Runtime copies: export, int8 on the samples, fp32 timed"] = (
                costs.ONNX_SECONDS_PER_WEIGHT * student.parameters + work.int8(samples)
                + work.predict(student, timed, on="cpu"))
        return parts, f"int8 student on {len(samples):,} reviews, the models timed on {len(timed):,}"
    raise ValueError(f"no estimate for stage {stage!r}; stages: {', '.join(STAGES)}")


def _training_words(params, shape, lengths, epochs, steps, saves):
    cut = np.minimum(lengths, params.max_length)
    return (f"{len(lengths):,} reviews x {cut.mean():.0f} tokens x {epochs} epoch{'s' * (epochs > 1)} ({steps:,} steps) of "
            f"a {shape.layers}-layer, {shape.hidden}-wide model; {saves} checkpoint{'s' * (saves != 1)} of "
            f"{costs.CHECKPOINT_BYTES_PER_WEIGHT * shape.parameters / 1e6:,.0f} MB")


# --- what the notebooks and the runner call ------------------------------------------------------------

RATES = {"train": "train_rate", "distill": "train_rate", "evaluate": "predict_rate", "distill_cpu": "cpu_rate"}


def estimate(run, stage, device=None, work=None):
    """The estimate of `stage` for `run` on this machine, as estimates.json holds it."""
    work = work or Work(run, device)
    parts, words = stage_parts(work, stage)
    on_cpu = stage == "distill_cpu" or work.kind == "cpu"
    entry = {"seconds": round(sum(parts.values()), 1), "parts": {k: round(v, 1) for k, v in parts.items()},
             "work": words, "device": f"this CPU ({os.cpu_count()} cores)" if on_cpu else f"this GPU ({work.device.name})",
             "precision": "fp32 and int8" if stage == "distill_cpu" else {"no": "fp32"}.get(work.mixed, work.mixed),
             "cpu_load": round(work.contention, 2)}
    if stage in RATES:  # the stages that run models: the rate their device work was estimated at
        entry["measured_gflops"] = float(f"{getattr(work, RATES[stage]) / 1e9:.3g}")
    return {**entry, "made": time.strftime("%Y-%m-%d %H:%M:%S")}


def announce(run, stage, device=None):
    """Print the estimate of `stage` (05 also its CPU part) and record it in the run's estimates.json.
    Call it before the stage's cell; returns {stage: estimate}."""
    if stage == "train" and device is None and several_gpus():
        print("train: no estimate on a machine with several GPUs (timing a layer would initialise CUDA in this "
              "process, and Accelerate's notebook_launcher then refuses to start one process per GPU)")
        return {}
    work = Work(run, device)
    found = {name: estimate(run, name, work=work) for name in ([stage, "distill_cpu"] if stage == "distill" else [stage])}
    for name, entry in found.items():
        print(describe(name, entry), flush=True)
    save(run.dir, found)
    return found


def several_gpus():
    import torch

    return torch.cuda.device_count() > 1  # counts devices without initialising CUDA


def describe(stage, entry):
    """Two lines: how long, where (and the rate timed there); then the work and the largest parts."""
    ahead = entry["seconds"] - entry["parts"].get("kernel start and imports", 0.0)
    largest = sorted(entry["parts"].items(), key=lambda item: -item[1])[:3]
    gflops = entry.get("measured_gflops")
    rate = "" if gflops is None else f"; an encoder layer timed here ran at {gflops:,.0f} GFLOP/s" if gflops >= 10 \
        else f"; an encoder layer timed here ran at {gflops:.2g} GFLOP/s"
    return (f"{stage}: about {duration(ahead)} on {entry['device']} ({entry['precision']}{rate})\n    {entry['work']}; "
            "most of it: " + ", ".join(f"{name} {duration(seconds)}" for name, seconds in largest))


def duration(seconds):
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def read_estimates(run_dir):
    """{stage: estimate} recorded so far in a run folder ({} before any)."""
    path = run_dir / layout.ESTIMATES_FILE
    return read_json(path) if path.exists() else {}


def save(run_dir, entries):
    """Merge `entries` into the run's estimates.json (written whole, atomically), by the first process only."""
    from accelerate import PartialState

    if PartialState().is_main_process:
        write_json(run_dir / layout.ESTIMATES_FILE, {**read_estimates(run_dir), **entries})


@contextlib.contextmanager
def measured(run, stage):
    """Record the seconds a block takes as `measured_seconds` of `stage` in estimates.json (for a part no
    notebook times on its own, such as 05's CPU part), beside its estimate."""
    started = time.perf_counter()
    yield
    entry = read_estimates(run.dir).get(stage, {})
    save(run.dir, {stage: {**entry, "measured_seconds": round(time.perf_counter() - started, 1)}})
