"""fp16 as a T4 runs it, on the CPU: fp16 autocast and a loss scaler (helpers.core.accelerators), skipped steps,
the divergence stop (in every precision), and an out-of-memory error inside an fp16 optimizer step."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.core import models
from helpers.core.errors import TrainingDiverged
from helpers.runs.config import resolve_params
from helpers.train import stepper, trainer
from helpers.train.trainer import TrainSettings


def _settings(**changes):
    params = resolve_params("smoke", {"epochs": 4, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0,
                                      "precision": "fp16", **changes})
    return TrainSettings.from_params(params)


def _loss_changed_at(calls, change, model=None, seen=None):
    """classification_loss, but `change(loss)` on the training calls numbered in `calls` (1 = the first); with
    `model`, its weights as each training call finds them go into `seen`."""
    count = {"n": 0}

    def loss_fn(logits, batch):
        loss = trainer.classification_loss(logits, batch)
        if not logits.requires_grad:
            return loss
        count["n"] += 1
        if model is not None:
            seen[count["n"]] = [p.detach().clone() for p in model.parameters()]
        return change(loss) if count["n"] in calls else loss
    return loss_fn


def test_a_checkpoint_stored_in_fp16_trains_in_emulated_fp16_with_the_scaler(tmp_path, tiny_teacher, tiny_tokenizer,
                                                                             synthetic):
    tiny_teacher.half().save_pretrained(tmp_path / "fp16")  # as a GPU user's checkpoint may be
    tiny_tokenizer.save_pretrained(tmp_path / "fp16")
    model = models.load_teacher(str(tmp_path / "fp16"), tiny_tokenizer, seed=0)
    products = set()
    first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_hook(lambda module, args, out: products.add(out.dtype))
    history = trainer.train(model, synthetic, tiny_tokenizer, _settings(), tmp_path / "out")
    assert history["precision"] == "fp16" and "emulated on the CPU" in history["precision_reason"]
    assert products == {torch.float16}  # the matrix products ran in fp16
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
    steps = history["steps"]
    assert all(math.isfinite(s["loss"]) and s["scale"] > 0 for s in steps)
    assert stepper.skipped_steps(steps) < len(steps) // 4
    assert max(e["accuracy"] for e in history["epochs"]) >= 0.9


def test_an_overflowing_step_is_skipped_its_scale_halved_and_the_run_goes_on(tmp_path, tiny_teacher, tiny_tokenizer,
                                                                             synthetic, capsys):
    seen = {}
    loss_fn = _loss_changed_at({5}, lambda loss: loss * math.inf, tiny_teacher, seen)
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=1), tmp_path, loss_fn=loss_fn)
    steps = history["steps"]
    assert [s["skipped"] for s in steps] == [i == 4 for i in range(12)]
    assert steps[4]["scale"] == steps[3]["scale"] / 2 and steps[5]["scale"] == steps[4]["scale"]
    assert steps[4]["lr"] == steps[3]["lr"] > steps[5]["lr"]  # the schedule holds on a skipped step
    assert all(torch.equal(a, b) for a, b in zip(seen[5], seen[6]))  # weights unchanged by the skipped step
    assert not all(torch.equal(a, b) for a, b in zip(seen[6], seen[7]))  # and the next step updated them
    assert "the loss scaler skipped 1 of 12 optimizer steps" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_loss_lost_from_the_first_step_stops_before_a_model_is_saved(tmp_path, tiny_teacher, tiny_tokenizer,
                                                                       synthetic, precision):
    loss_fn = _loss_changed_at(range(1, 1000), lambda loss: loss * math.nan)
    with pytest.raises(TrainingDiverged, match=r"step 10: the training loss was nan for the last 10 optimizer steps"
                                               r".*a lower lr \(now 0.005\), precision fp32.*a shorter max_length"):
        trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(precision=precision), tmp_path, loss_fn=loss_fn)
    assert not (tmp_path / "model").exists() and not (tmp_path / "history.json").exists()


def test_a_scaler_skipping_a_quarter_of_its_steps_after_the_first_ones_is_divergence():
    def steps(skipped):
        return [{"loss": 0.5, "skipped": i in skipped, "scale": 1.0} for i in range(70)]
    assert stepper.divergence(steps(range(20))) is None  # the first 20 steps: skips are normal there
    assert stepper.divergence(steps(range(58, 70))) is None  # 12 of the last 50
    assert "skipped 13 of the last 50" in stepper.divergence(steps(range(57, 70)))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_out_of_memory_inside_the_optimizer_step_halves_and_retries(tmp_path, tiny_teacher, tiny_tokenizer, synthetic,
                                                                    monkeypatch, capsys, precision):
    """In fp16, clipping has unscaled the gradients when AdamW runs out of memory: the retry must start the scaler's
    step afresh, or its clipping raises "unscale_() has already been called"."""
    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def step_out_of_memory_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_out_of_memory_once)
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=1, precision=precision), tmp_path)
    assert "out of memory with 16 reviews per device: halving to 8" in capsys.readouterr().out
    assert len(history["steps"]) == 12 and np.isfinite([s["loss"] for s in history["steps"]]).all()
    assert stepper.skipped_steps(history["steps"]) == 0


@pytest.mark.slow
def test_the_smoke_run_through_the_real_notebooks_in_fp16(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "helpers.run", "smoke", "--run-dir", str(run_dir),
                             "-p", "precision", "fp16"], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in ("train", "distill"):
        history = json.loads((run_dir / stage / "history.json").read_text())
        assert history["precision"] == "fp16" and all("scale" in s and "skipped" in s for s in history["steps"])
    assert (run_dir / "distill" / "comparison.json").exists() and (run_dir / "report.html").exists()
