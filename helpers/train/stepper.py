"""One optimizer step of the training loop (helpers.train.trainer), and what the steps say about training. With
fp16 a loss scaler (Accelerate's, or the CPU's: helpers.core.accelerators) skips a step whose gradients hold inf or
NaN and halves its scale; Accelerate then holds the prepared scheduler too, so warmup and decay count the steps
taken, while the loop's step count, `min_steps` and the checkpoint cadence count every step tried.
`stop_if_diverged` ends a run whose loss is lost, in every precision."""
import contextlib
import gc
import math

import torch
from accelerate.utils import broadcast_object_list
from accelerate.utils.memory import should_reduce_batch_size

from helpers.core.errors import TrainingDiverged
from helpers.train.batching import split_batch
from helpers.train.prediction import forward

# a diverged run: its loss not finite this many steps in a row (one NaN batch can be bad luck; ten are not)...
NONFINITE_STEPS = 10
# ...or the fp16 scaler skipping more than SKIPPED_SHARE of the last SKIP_WINDOW steps after the first
# SKIPS_NORMAL steps, where it is normal: the scale starts high (65,536) and halves at each overflow until it fits
SKIP_WINDOW, SKIPPED_SHARE, SKIPS_NORMAL = 50, 0.25, 20


class Stepper:
    """`step(batches)`: one optimizer step on a window of batches (forward, loss, backward, clipping, update,
    schedule); returns their mean loss, every review weighing the same. Called, it runs `step` inside the
    out-of-memory handling: each batch runs in `parts` pieces, 1 until the device runs out of memory, then the
    step starts again with pieces half the size (the same effective batch), and stays so."""

    def __init__(self, model, optimizer, scheduler, accelerator, settings, loss_fn):
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.max_grad_norm, self.loss_fn, self.parts = settings.max_grad_norm, loss_fn, 1
        self.per_device = settings.batch_size // accelerator.num_processes  # reviews of a whole batch on each device
        self.scaled = False  # whether the loss scaler has scaled a loss yet (it sets up its scale then)

    def __call__(self, batches):
        while True:
            try:
                return self.step(batches)
            except RuntimeError as error:
                if not should_reduce_batch_size(error):
                    raise
                self.optimizer.zero_grad(set_to_none=True)  # what the failed try accumulated goes
                scaler = self.accelerator.scaler
                if scaler is not None and self.scaled:
                    # out of memory after clipping: the scaler still marks the gradients unscaled, and the retry's
                    # clipping would raise "unscale_() has already been called". update() with the scale as it is
                    # (its public way to end a step) clears the mark and leaves the scale and its growth tracker alone
                    scaler.update(scaler.get_scale())
                if self.parts >= self.per_device:
                    raise RuntimeError("out of memory with 1 review per device: the model and one review of max_length "
                                       "tokens do not fit; lower max_length, train in bf16/fp16, or use a larger GPU") from error
                old = math.ceil(self.per_device / self.parts)
                self.parts *= 2
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.accelerator.print(f"out of memory with {old} reviews per device: halving to "
                                       f"{math.ceil(self.per_device / self.parts)} and doubling gradient accumulation "
                                       f"({self.parts} pieces per batch), so the effective batch is unchanged; this "
                                       "step starts again")

    def step(self, batches):
        """Each piece's loss is weighted by its share of the window's reviews, so the gradients are those of one
        batch of them all; processes synchronise gradients only after the last piece."""
        model, accelerator = self.model, self.accelerator
        pieces = [piece for batch in batches for piece in split_batch(batch, self.parts)]
        reviews = sum(len(piece["input_ids"]) for piece in pieces)
        total = 0.0
        for i, piece in enumerate(pieces):
            weight = len(piece["input_ids"]) / reviews
            with accelerator.no_sync(model) if i < len(pieces) - 1 else contextlib.nullcontext():
                loss = self.loss_fn(forward(model, piece), piece)
                accelerator.backward(loss * weight)
            self.scaled = True
            total = total + loss.detach().float() * weight
        if self.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return total


def scaler_record(accelerator):
    """With a loss scaler, what a step's record holds of it: whether it skipped the step, and the scale after."""
    scaler = accelerator.scaler
    return {} if scaler is None else {"skipped": accelerator.optimizer_step_was_skipped, "scale": scaler.get_scale()}


def skipped_steps(steps):
    return sum(record.get("skipped", False) for record in steps)


def skipped_note(steps):
    """What the fp16 loss scaler did so far, for the epoch line and 03's summary ('' without a scaler)."""
    if not steps or "scale" not in steps[-1]:
        return ""
    return (f"; fp16: the loss scaler skipped {skipped_steps(steps)} of {len(steps)} optimizer steps (a few at the "
            f"start are normal while the scale settles), scale now {steps[-1]['scale']:g}")


def divergence(steps):
    """Why training has diverged, read from the step records (losses as numbers), or None."""
    streak = next((i for i, record in enumerate(reversed(steps)) if math.isfinite(record["loss"])), len(steps))
    if streak >= NONFINITE_STEPS:
        return f"the training loss was {steps[-1]['loss']} for the last {streak} optimizer steps"
    recent = steps[SKIPS_NORMAL:][-SKIP_WINDOW:]
    if skipped_steps(recent) > SKIPPED_SHARE * SKIP_WINDOW:
        return (f"the fp16 loss scaler skipped {skipped_steps(recent)} of the last {len(recent)} optimizer steps "
                f"(gradients with inf or NaN), its scale down to {recent[-1]['scale']:g}")
    return None


def stop_if_diverged(steps, settings, accelerator):
    """Raise TrainingDiverged, before anything more is saved, when `divergence` finds it (the first process decides)."""
    why = divergence(steps)
    if accelerator.num_processes > 1:
        why = broadcast_object_list([why])[0]
    if why:
        raise TrainingDiverged(
            f"training diverged at optimizer step {len(steps)}: {why}. Nothing of this training is saved; earlier "
            f"stages' files and its checkpoints from before stay. Fixes: a lower lr (now {settings.lr:g}), precision "
            f"fp32 (now {accelerator.mixed_precision.replace('no', 'fp32')}), or a shorter max_length")
