"""bench/gpu_check.py's parts that time and stress the training loop: bert-base and oom.

bert-base: ours (helpers.train.trainer.train) against the Trainer, both with saving and evaluation off
(bench/loop_timing.py), on bert-base shapes with random weights built by tests/hub_cache.py. Each
run loads a fresh model, trains one epoch on the same reviews and is timed apart from its setup;
rates are over the steps after the first (which pays one-time costs: compiling, with `compile`).
FLOPs are counted on real tokens and MFU is against the best of 5 products of two 8192 x 8192
matrices in the run's precision, measured in this process (bench/train_speed.py). Ours trains with
the project's attention dropout (0), the Trainer with the model's own (0.1), as each is run.

oom: one step of full's batch (32 reviews of 512 tokens) through helpers.train.trainer.train, uncapped,
then with this process capped at 60% of that step's peak memory, hidden dropout off in both so
that the whole batch and its pieces compute the same loss.
"""
import contextlib
import dataclasses
import functools
import gc
import io
import math
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch

from bench import loop_timing
from bench.loop_timing import prepare
from bench.train_speed import PeakMemory, TokenCounter, matmul_peak, warm_up
from helpers.core import models
from helpers.data import imdb
from helpers.runs.config import resolve_params
from helpers.tokens import tokens

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BERT_BASE = dict(n_train=2000, n_val=64, max_length=512, batch_size=32, lr=2e-5)  # full's tokens, batch and lr
DRY_RUN_BERT = dict(model="tiny-random-bert", n_train=64, n_val=16, max_length=64, batch_size=8, lr=1e-3)
TARGETS = {"trainer grouped": 1.0, "trainer": 1.3}  # bf16 (fp32 in the dry run): ours' speed over the Trainer's, at least
OOM_BATCH = 32  # full's batch_size
MEMORY_CAP_SHARE = 0.6  # of the uncapped step's peak memory
LOSS_TOLERANCE = 0.01  # relative: the capped step's loss within 1% of the uncapped one's


def bert_base_folder(check, tokenizer):
    """bert-base-uncased's shapes with random weights, saved once per check as tests/hub_cache.py saves them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import hub_cache

    folder = hub_cache.snapshot_dir(check.work / "hub", hub_cache.TEACHER)
    if not (folder / "model.safetensors").exists():
        hub_cache.write_models(check.work / "hub", tokenizer)
    return str(folder)


def loop_model(check):
    """The model the loop parts train: bert-base shapes on a GPU, the tiny model in the dry run."""
    if check.dry_run:
        return models.TINY
    return bert_base_folder(check, tokens.load_tokenizer(check.minilm))


def race(params, tokenized, tokenizer, loop, peaks):
    """One timed epoch of `loop` ('ours' or 'trainer'), saving and evaluation off; its figures."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    attention_dropout = params.attention_dropout if loop == "ours" else None
    model = models.load_teacher(params.model, tokenizer, params.seed, attention_dropout)
    train = loop_timing.train_ours if loop == "ours" else \
        functools.partial(loop_timing.train_trainer, group_by_length=params.group_by_length)
    counter = TokenCounter(model)
    with PeakMemory(device) as memory, tempfile.TemporaryDirectory() as out_dir:
        run = loop_timing.time_loop(functools.partial(train, model, params, tokenized, tokenizer, out_dir, "off"), model)
    counter.remove()
    after_first = run.loop_s - run.stamps[1][0] + run.stamps[0][0]  # from the second forward to the return
    reviews = sum(rows for _, rows in run.stamps[1:])
    return {"loop": loop, "precision": run.precision, "group_by_length": params.group_by_length,
            "compile": params.compile, "reviews": sum(rows for _, rows in run.stamps), "setup_s": run.setup_s,
            "first_step_s": run.stamps[1][0] - run.stamps[0][0], "loop_s": run.loop_s,
            "reviews_per_s": reviews / after_first, "mfu": counter.flops_after(1) / after_first / peaks[run.precision],
            "padding_share": 1 - counter.real / counter.padded, "peak_memory_mb": memory.peak_mb,
            "final_loss": run.losses[-1] if run.losses else None,
            "losses_finite": bool(run.losses) and all(math.isfinite(loss) for loss in run.losses)}


def bert_base_part(check):
    """Ours against the Trainer on bert-base shapes: precisions x grouping, then ours with compile."""
    model = loop_model(check)
    size = {**(DRY_RUN_BERT if check.dry_run else {**BERT_BASE, "model": model}), "data": check.imdb,
            "precision": "bf16"}
    params, _, tokenized, tokenizer = prepare(size)
    precisions = ("bf16", "fp16") if check.cuda else ("fp32",)
    if not check.cuda:
        check.note("fp16 needs CUDA: on the CPU the runs train in fp32 alone (bf16 on a CPU is another path than "
                   "a GPU's, and slow for the tiny model)")
    device = "cuda" if check.cuda else "cpu"
    if check.cuda:  # CUDA's start-up is paid here, not by the first run
        warm_up(params, tokenizer, [DTYPES[p] for p in precisions])
    peaks = {p: matmul_peak(DTYPES[p], device) for p in precisions}
    runs = []
    for precision in precisions:
        for loop in ("ours", "trainer"):
            for grouped in (True, False):
                print(f"bert-base: {loop}, {precision}, length grouping {'on' if grouped else 'off'} ...", flush=True)
                runs.append(race(dataclasses.replace(params, precision=precision, group_by_length=grouped),
                                 tokenized, tokenizer, loop, peaks))
    with compile_backend(check):
        print(f"bert-base: ours, {precisions[0]}, compiled ...", flush=True)
        runs.append(race(dataclasses.replace(params, precision=precisions[0], compile=True), tokenized, tokenizer,
                         "ours", peaks))
    ratios = speed_ratios(runs, precisions)
    checks = {"losses_finite": all(run["losses_finite"] for run in runs),
              "every_review_trained": all(run["reviews"] == len(tokenized["train"]) for run in runs)}
    targets = {rival: ratios[precisions[0]][rival] >= floor for rival, floor in TARGETS.items()}
    return {"size": {**size, "reviews": len(tokenized["train"])}, "matmul_peak_flops_per_s": peaks, "runs": runs,
            "ours_vs_trainer": ratios, "targets_met": targets, "checks": checks}


@contextlib.contextmanager
def compile_backend(check):
    """Inductor on a GPU; in the dry run the eager backend (dynamo traces the model, no kernels are generated)."""
    if check.cuda:
        yield
        return
    from helpers.train import trainer

    check.note("compile uses the eager backend on the CPU: inductor's kernel generation is for the GPU run")
    with mock.patch.object(trainer, "COMPILE_BACKEND", "eager"):
        yield


def speed_ratios(runs, precisions):
    """Per precision: ours grouped (not compiled) over the Trainer grouped and over the Trainer with random batches."""
    def rate(loop, precision, grouped):
        return next(run["reviews_per_s"] for run in runs if run["loop"] == loop and run["precision"] == precision
                    and run["group_by_length"] == grouped and not run["compile"])

    return {p: {"trainer grouped": rate("ours", p, True) / rate("trainer", p, True),
                "trainer": rate("ours", p, True) / rate("trainer", p, False)} for p in precisions}


def long_reviews(train, tokenizer, max_length, n, chunk=256):
    """`n` of the `train` reviews with at least max_length tokens (so that a batch is n x max_length) and 8
    more for the loop's validation split, tokenized as the pipeline tokenizes."""
    train = train.sample(frac=1.0, random_state=0)
    long = []
    for start in range(0, len(train), chunk):  # token counts a chunk at a time, until enough are found
        part = train.iloc[start:start + chunk]
        lengths = [len(ids) for ids in tokens.full_ids(tokenizer, part["text"].tolist())]
        long += [i for i, length in zip(part.index, lengths) if length >= max_length]
        if len(long) >= n + 8:
            break
    if len(long) < n + 8:
        raise RuntimeError(f"only {len(long)} reviews have {max_length} tokens or more; {n + 8} are needed")
    picked = train.loc[long[:n + 8]]
    return tokens.tokenize_splits({"train": picked.iloc[:n], "val": picked.iloc[n:]}, tokenizer, max_length)


def one_step(params, tokenized, tokenizer, cap):
    """helpers.train.trainer.train on one batch (one optimizer step), hidden dropout off, under `cap(model)`."""
    model = models.load_teacher(params.model, tokenizer, params.seed, attention_dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    clock, printed = loop_timing.StepClock(model), io.StringIO()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with PeakMemory(device) as memory, cap(model), tempfile.TemporaryDirectory() as out_dir, \
            contextlib.redirect_stdout(Tee(sys.stdout, printed)):
        _, losses = loop_timing.train_ours(model, params, tokenized, tokenizer, out_dir, "off")
    clock.remove()
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"losses": losses, "forward_reviews": [rows for _, rows in clock.stamps], "peak_memory_mb": memory.peak_mb,
            "halving_messages": [line for line in printed.getvalue().splitlines() if "out of memory with" in line]}


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def no_cap(model):
    yield


def cuda_cap(cap_bytes):
    """This process's CUDA memory capped at `cap_bytes` while the block runs."""
    @contextlib.contextmanager
    def cap(model):
        torch.cuda.set_per_process_memory_fraction(cap_bytes / torch.cuda.get_device_properties(0).total_memory)
        try:
            yield
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
    return cap


def simulated_cap(max_reviews):
    """On the CPU: any forward pass over more than `max_reviews` reviews fails as CUDA's allocator would."""
    @contextlib.contextmanager
    def cap(model):
        def refuse(module, args, kwargs):
            if module.training and len(kwargs["input_ids"]) > max_reviews:
                raise torch.OutOfMemoryError(f"CUDA out of memory. (simulated by bench/gpu_check.py --dry-run: "
                                             f"more than {max_reviews} reviews)")
        handle = model.register_forward_pre_hook(refuse, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
    return cap


def successful_pieces(forward_reviews, batch):
    """The pieces of the attempt that succeeded: the last forwards, counted back until they hold the batch."""
    pieces, total = [], 0
    for reviews in reversed(forward_reviews):
        if total >= batch:
            break
        pieces.insert(0, reviews)
        total += reviews
    return pieces


def oom_part(check):
    """One step of batch 32 uncapped, then capped at 60% of its peak: halved, same batch, same loss."""
    max_length = BERT_BASE["max_length"] if check.cuda else DRY_RUN_BERT["max_length"]
    model = loop_model(check)
    overrides = {"model": model, "data": check.imdb, "max_length": max_length, "batch_size": OOM_BATCH,
                 "min_steps": 0, "epochs": 1, "checkpoint_every": 0, "tracker": "none",
                 "precision": "auto" if check.cuda else "fp32"}  # auto: what full trains in on this GPU
    params = resolve_params("full", overrides)
    train = imdb.load_imdb(check.imdb)["train"]
    tokenizer = tokens.prepare_tokenizer(params, train["text"].tolist())  # the tiny model learns its vocabulary
    tokenized = long_reviews(train, tokenizer, max_length, OOM_BATCH)
    print("oom: one step, uncapped ...", flush=True)
    uncapped = one_step(params, tokenized, tokenizer, no_cap)
    cap_mb = MEMORY_CAP_SHARE * uncapped["peak_memory_mb"]
    held_mb = torch.cuda.memory_allocated() / 1e6 if check.cuda else None  # what stays allocated under the cap
    if check.cuda:
        cap = cuda_cap(cap_mb * 1e6)
    else:
        check.note("the memory cap needs CUDA (torch.cuda.set_per_process_memory_fraction): on the CPU a forward "
                   f"pass over more than {OOM_BATCH // 2} reviews raises torch.OutOfMemoryError instead")
        cap = simulated_cap(OOM_BATCH // 2)
    print(f"oom: the same step, capped at {cap_mb:.0f} MB ...", flush=True)
    capped = one_step(params, tokenized, tokenizer, cap)
    pieces = successful_pieces(capped["forward_reviews"], OOM_BATCH)
    difference = abs(capped["losses"][0] - uncapped["losses"][0])
    checks = {
        "uncapped_in_one_piece": uncapped["forward_reviews"] == [OOM_BATCH],
        "halved": bool(capped["halving_messages"]) and max(pieces) <= OOM_BATCH // 2,
        "effective_batch_unchanged": len(capped["losses"]) == 1 and sum(pieces) == OOM_BATCH,
        "loss_matches": difference <= LOSS_TOLERANCE * abs(uncapped["losses"][0]),
    }
    return {"batch": OOM_BATCH, "max_length": max_length, "precision": loop_timing.loop_precision(params),
            "cap_mb": cap_mb, "allocated_before_cap_mb": held_mb, "uncapped": uncapped, "capped": capped, "pieces": pieces,
            "loss_difference": difference, "loss_tolerance_relative": LOSS_TOLERANCE, "checks": checks}
