"""The Accelerator that training and prediction run on (devices, mixed precision from helpers.core.precision's
decision table, processes), and plain models leaving it."""
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DataLoaderConfiguration, extract_model_from_parallel

from helpers.core.errors import ConfigError
from helpers.core.precision import choose_precision


def is_main_process():
    """False in every process but the first of a multi-process launch (`accelerate launch`, torchrun, Accelerate's
    notebook_launcher all set RANK): only the first writes. Read from the launcher, not from Accelerate: asking
    Accelerate before a stage has joined the processes would join them on its own terms (one process on a CPU)."""
    return int(os.environ.get("RANK", "0")) == 0


def make_accelerator(settings, out_dir=None):
    """An Accelerator for this process; under `accelerate launch` it joins the other processes. Batches are split
    across processes (`split_batches`): `batch_size` is the global batch of a step however many processes share it,
    so 1 and N processes train the same model, up to dropout masks and the order of sums. Gradient accumulation is
    the loop's own (it cuts batches smaller when out of memory). The precision's reason is kept as
    `accelerator.precision_reason`; the tracker writes to `out_dir`/tensorboard."""
    choice = choose_precision(settings.precision)
    _forget_other_precision(choice.mixed_precision)
    tracker = getattr(settings, "tracker", "none")
    # non_blocking: batches in pinned memory (helpers.train.batching) reach the GPU without stalling the loop
    accelerator = Accelerator(mixed_precision=choice.mixed_precision,
                              dataloader_config=DataLoaderConfiguration(split_batches=True, non_blocking=True),
                              log_with=None if out_dir is None or tracker == "none" else tracker,
                              project_dir=None if out_dir is None else Path(out_dir) / "tensorboard")
    accelerator.precision_reason = choice.reason
    if choice.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        # Accelerate gives a CPU no loss scaler and no fp16 autocast, without a word; with these two set before
        # `prepare`, its own fp16 path runs: scaled backward, unscaling, skipped steps, the scaler in checkpoints
        accelerator.scaler, accelerator.native_amp = torch.amp.GradScaler("cpu"), True
    for name in ("batch_size", "eval_batch_size"):
        if getattr(settings, name) % accelerator.num_processes:
            raise ConfigError(f"{name} {getattr(settings, name)} does not split evenly over "
                              f"{accelerator.num_processes} processes; make it a multiple of {accelerator.num_processes}")
    return accelerator


def _forget_other_precision(mixed_precision):
    """Let a single process change precision between loops (a test suite, a notebook re-run with other
    parameters): Accelerate keeps one per process and refuses another. A multi-process launch keeps its own."""
    held = AcceleratorState._shared_state.get("_mixed_precision")  # private, like the reset: no public way exists
    if held is not None and held != mixed_precision and PartialState().num_processes == 1:
        AcceleratorState._reset_state()


def plain_model(model):
    """`model` as a plain module, in place: no process wrapper, no autocast wrapper on `forward` (which `prepare`
    adds under bf16/fp16: an int8 copy would be handed bf16 activations, a CPU timing would time bf16). Accelerate
    hands a model it prepared back unchanged, without autocast, if asked again: only a training loop prepares one;
    predictions use the Accelerator's autocast (helpers.train.prediction)."""
    return extract_model_from_parallel(model, keep_fp32_wrapper=False)
