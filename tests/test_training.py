import math

import datasets
import numpy as np
import pytest
import torch

from helpers.core import accelerators, models
from helpers.core.errors import ConfigError
from helpers.runs.config import resolve_params
from helpers.train import batching, optimization, prediction, stepper, trainer
from helpers.train.trainer import TrainSettings


def _settings(**changes):
    # fp32 unless a test is about another precision: the tolerances below are fp32's
    params = resolve_params("smoke", {"epochs": 4, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0,
                                      "precision": "fp32", **changes})
    return TrainSettings.from_params(params)


def test_the_loop_learns_and_keeps_the_best_model(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(), tmp_path)
    accuracies = [e["accuracy"] for e in history["epochs"]]
    assert max(accuracies) >= 0.9, accuracies
    assert len(history["steps"]) == 4 * math.ceil(192 / 16)
    assert history["steps"][-1]["lr"] < history["steps"][0]["lr"]  # linear decay
    best = models.load_trained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert (tmp_path / "model" / "tokenizer_config.json").exists()
    best_epoch = int(np.argmax(accuracies)) + 1
    assert [e["saved"] for e in history["epochs"]].count(True) >= 1
    assert history["epochs"][best_epoch - 1]["saved"]
    assert best.config.num_labels == 2
    assert (tmp_path / "history.json").exists()


def test_gradient_accumulation_takes_fewer_optimizer_steps(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=1, grad_accum_steps=4), tmp_path)
    assert len(history["steps"]) == math.ceil(192 / 16 / 4)


def test_pieces_of_a_batch_give_the_step_of_the_whole_batch(synthetic, tiny_teacher, tiny_tokenizer):
    """One optimizer step (Stepper.step: forward, loss, backward, clip, update) on two batches, each run whole and
    each in 4 pieces, from the same weights: the same gradients, so the same weights after the update."""
    import copy

    settings = _settings()
    accelerator = accelerators.make_accelerator(settings)
    tiny_teacher.eval()  # no dropout: the pieces must add up exactly
    batches = list(batching.make_loader(synthetic["train"].select(range(32)), tiny_tokenizer, 16))
    after = {}
    for parts in (1, 4):
        model = copy.deepcopy(tiny_teacher)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        one_step = stepper.Stepper(model, optimizer, scheduler, accelerator, settings, trainer.classification_loss)
        one_step.parts = parts
        loss = one_step.step(batches)
        after[parts] = (loss.item(), [p.detach().clone() for p in model.parameters()])
    assert after[4][0] == pytest.approx(after[1][0], rel=1e-5)
    for whole, pieces in zip(after[1][1], after[4][1]):
        torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=1e-5)
    moved = [not torch.equal(new, old) for new, old in zip(after[1][1], tiny_teacher.parameters())]
    assert any(moved)  # the step did update the weights: the comparison above compares updates


def test_accumulated_batches_of_unequal_size_weigh_each_review_the_same(synthetic, tiny_teacher, tiny_tokenizer):
    """grad_accum_steps > 1 with an epoch's short last batch (16 + 5 reviews): one step on the window gives the
    gradients of one batch of all 21 reviews, not the mean of the two batches' means."""
    import copy

    accelerator = accelerators.make_accelerator(_settings())
    tiny_teacher.eval()  # no dropout
    rows = synthetic["train"].select(range(21))
    window = [b for b in batching.make_loader(rows, tiny_tokenizer, 16)]
    grads = {}
    for name, batches in (("window", window), ("one batch", list(batching.make_loader(rows, tiny_tokenizer, 21)))):
        model = copy.deepcopy(tiny_teacher)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        optimizer.zero_grad = lambda *args, **kwargs: None  # keep the gradients to compare
        one_step = stepper.Stepper(model, optimizer, scheduler, accelerator, _settings(max_grad_norm=0.0),
                                   trainer.classification_loss)
        one_step.step(batches)
        grads[name] = [p.grad for p in model.parameters()]
    assert [len(b["labels"]) for b in window] == [16, 5]
    for pieces, whole in zip(grads["window"], grads["one batch"]):
        torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=1e-4)


def test_out_of_memory_halves_the_batch_and_doubles_accumulation(tmp_path, synthetic, tiny_teacher, tiny_tokenizer,
                                                                 monkeypatch, capsys):
    """A device that holds at most 4 reviews at a time: the loop goes 16 -> 8 -> 4 and trains as usual."""
    real_forward = stepper.forward
    tried = []

    def small_device(model, batch):
        tried.append(len(batch["input_ids"]))
        if len(batch["input_ids"]) > 4 and model.training:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_forward(model, batch)

    monkeypatch.setattr(stepper, "forward", small_device)
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(), tmp_path)
    out = capsys.readouterr().out
    assert "out of memory with 16 reviews per device: halving to 8" in out
    assert "out of memory with 8 reviews per device: halving to 4" in out and "effective batch is unchanged" in out
    assert out.count("out of memory") == 2  # found once, then kept for the rest of training
    assert tried[:3] == [16, 8, 4] and max(tried[3:]) <= 16  # (validation still predicts in whole batches)
    assert len(history["steps"]) == 4 * math.ceil(192 / 16)  # as many optimizer steps: the same effective batch
    assert max(e["accuracy"] for e in history["epochs"]) >= 0.9


def test_warmup_then_linear_decay(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=1, warmup_ratio=0.25), tmp_path)
    lrs = [s["lr"] for s in history["steps"]]  # 12 steps, 3 of warmup
    assert lrs[0] < lrs[2] and lrs[2] == pytest.approx(5e-3) and lrs[-1] < lrs[3]


def test_no_weight_decay_on_biases_and_layernorm(tiny_teacher):
    decay, no_decay = optimization.param_groups(tiny_teacher, 0.01, 1e-3)
    names = {id(p): n for n, p in tiny_teacher.named_parameters()}
    assert all(not names[id(p)].endswith(("bias", "LayerNorm.weight")) for p in decay["params"])
    assert any(names[id(p)].endswith("LayerNorm.weight") for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


def test_layer_decay_lowers_the_rate_layer_by_layer(tiny_teacher):
    groups = optimization.param_groups(tiny_teacher, 0.01, 1e-3, layer_decay=0.5)
    lr_of = {name: group["lr"] for group in groups for name, p in tiny_teacher.named_parameters()
             if any(p is q for q in group["params"])}
    n = tiny_teacher.config.num_hidden_layers  # 4: embeddings 0.5**5, layer i 0.5**(4 - i), head 1
    assert lr_of["classifier.weight"] == lr_of["bert.pooler.dense.weight"] == pytest.approx(1e-3)
    assert lr_of["bert.encoder.layer.3.output.dense.weight"] == pytest.approx(1e-3 * 0.5)
    assert lr_of["bert.encoder.layer.0.attention.self.query.bias"] == pytest.approx(1e-3 * 0.5 ** n)
    assert lr_of["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-3 * 0.5 ** (n + 1))
    assert sum(len(g["params"]) for g in groups) == len(list(tiny_teacher.parameters()))
    assert len(optimization.param_groups(tiny_teacher, 0.01, 1e-3)) == 2  # no decay: one rate, two groups


def test_min_steps_adds_epochs_to_a_small_set(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    settings = _settings(epochs=1, batch_size=16, min_steps=30)  # 12 steps an epoch: 3 epochs
    assert optimization.planned_epochs(12, settings) == (12, 3)
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, settings, tmp_path)
    assert len(history["epochs"]) == 3 and len(history["steps"]) == 36
    assert optimization.planned_epochs(12, _settings(epochs=2, min_steps=5)) == (12, 2)  # enough steps: epochs kept


def test_batches_are_padded_to_a_multiple_of_8(synthetic, tiny_tokenizer):
    loader = batching.make_loader(synthetic["train"], tiny_tokenizer, 16)
    batch = next(iter(loader))
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["input_ids"].shape[1] - max(len(x) for x in synthetic["train"][:16]["input_ids"]) < 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="trains on the CPU")
def test_the_loop_trains_in_bf16_on_the_cpu_when_auto_picks_it(tmp_path, synthetic, tiny_teacher, tiny_tokenizer,
                                                               cpu_with):
    """Also after fp32 tests in the same process: Accelerate keeps one precision per process, and
    make_accelerator lets a single process change it."""
    cpu_with(bf16_flag=True, bf16_seconds=0.5)
    linear_dtypes = set()
    first_linear = next(m for m in tiny_teacher.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_hook(lambda module, args, out: linear_dtypes.add(out.dtype))
    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=1, precision="auto"), tmp_path)
    assert history["precision"] == "bf16" and "timed product" in history["precision_reason"]
    assert linear_dtypes == {torch.bfloat16}  # the matrix products really ran in bf16
    assert np.isfinite([step["loss"] for step in history["steps"]]).all()
    assert next(tiny_teacher.parameters()).dtype == torch.float32  # autocast: the weights stay fp32
    assert "_original_forward" not in tiny_teacher.__dict__  # the model leaves the loop plain
    linear_dtypes.clear()
    prediction.predict_logits(tiny_teacher, synthetic["val"], tiny_tokenizer, 16)
    assert linear_dtypes == {torch.float32}
    fp32 = trainer.train(models.load_teacher(models.TINY, tiny_tokenizer, seed=0), synthetic, tiny_tokenizer,
                          _settings(epochs=1, precision="fp32"), tmp_path / "fp32")
    assert fp32["precision"] == "no"  # the next loop in this process may take another precision


def test_student_settings_use_the_student_values():
    params = resolve_params("quick", {"epochs": 2, "student_epochs": 3, "lr": 1e-4, "student_lr": 5e-4})
    assert TrainSettings.from_params(params).epochs == 2
    student = TrainSettings.from_params(params, student=True)
    assert (student.epochs, student.lr, student.batch_size) == (3, 5e-4, params.batch_size)


def test_length_grouped_batches_cover_every_review_with_less_padding(tiny_tokenizer):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=96)
    ds = datasets.Dataset.from_dict({"input_ids": [[2] + [7] * (n - 2) + [3] for n in lengths],
                                     "attention_mask": [[1] * n for n in lengths], "labels": list(range(96))})

    def epoch(loader):
        batches = list(loader)
        padded = sum(b["input_ids"].numel() for b in batches)
        return padded, [label for b in batches for label in b["labels"].tolist()]

    def loader(group_by_length, epoch_number=1):
        sampler = batching.EpochSampler(lengths, 8, seed=1, group_by_length=group_by_length)
        sampler.epoch = epoch_number
        return batching.make_loader(ds, tiny_tokenizer, 8, sampler)

    (grouped_tokens, first), (_, second) = epoch(loader(True)), epoch(loader(True, epoch_number=2))
    plain_tokens, plain_order = epoch(loader(False))
    assert sorted(first) == list(range(96)) and first != second  # every review once, new order each epoch
    assert sorted(plain_order) == list(range(96)) and plain_order != list(range(96))
    assert grouped_tokens < 0.8 * plain_tokens
    assert epoch(loader(True))[1] == first  # an epoch's order depends on (seed, epoch) alone: resumable


def test_grouped_batches_come_in_random_order_not_longest_first():
    lengths = list(np.random.default_rng(0).integers(10, 500, size=100))  # 25 batches of 4: one group
    order = batching.length_grouped_order(lengths, 4, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(100))
    batches = [order[i:i + 4] for i in range(0, 100, 4)]
    longest = [max(lengths[i] for i in batch) for batch in batches]
    assert longest != sorted(longest, reverse=True) and longest != sorted(longest)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 0.2 * (max(lengths) - min(lengths))  # each batch holds reviews of similar length
    uneven = batching.length_grouped_order(lengths[:99], 4, torch.Generator().manual_seed(0))
    shortest = set(np.argsort(lengths[:99], kind="stable")[:3].tolist())
    assert sorted(uneven) == list(range(99)) and set(uneven[-3:]) == shortest  # the one short batch comes last


def test_batches_are_pinned_for_a_gpu_and_copied_without_blocking(synthetic, tiny_tokenizer, monkeypatch):
    """Pinned (page-locked) batches let the copy to the GPU run beside the step; no worker processes, which
    would start anew at every epoch and resume (Accelerate's loader already fetches a batch ahead)."""
    assert not batching.make_loader(synthetic["train"], tiny_tokenizer, 16).pin_memory  # CPU: nothing to pin for
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loader = batching.make_loader(synthetic["train"], tiny_tokenizer, 16)
    assert loader.pin_memory and loader.num_workers == 0
    monkeypatch.undo()
    assert accelerators.make_accelerator(_settings()).dataloader_config.non_blocking


def test_starting_a_pass_over_the_loader_leaves_the_global_random_state_alone(synthetic, tiny_tokenizer):
    loader = batching.make_loader(synthetic["train"], tiny_tokenizer, 16, batching.EpochSampler([5] * 64, 16, 0, False))
    before = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(before, torch.get_rng_state())


def test_a_compiled_model_trains_as_the_eager_one_and_saves_under_its_own_weight_names(
        tmp_path, synthetic, tiny_tokenizer, monkeypatch):
    # dynamo traces the model as on a GPU; the "eager" backend runs the traced graph without inductor's
    # C++/Triton code generation, which on 2 cores takes minutes and is not what this test is about
    monkeypatch.setattr(trainer, "COMPILE_BACKEND", "eager")
    histories, models_trained = {}, {}
    for compiled in (False, True):
        model = models.load_teacher(models.TINY, tiny_tokenizer, seed=0)
        histories[compiled] = trainer.train(model, synthetic, tiny_tokenizer, _settings(epochs=1, compile=compiled),
                                             tmp_path / str(compiled))
        models_trained[compiled] = model
    assert models_trained[True]._compiled_call_impl is not None and models_trained[False]._compiled_call_impl is None
    losses = {compiled: [step["loss"] for step in history["steps"]] for compiled, history in histories.items()}
    assert np.allclose(losses[True], losses[False], atol=1e-5), losses
    best = models.load_trained(tmp_path / "True" / "model")  # "_orig_mod." prefixes would leave it untrained
    assert best.state_dict().keys() == models_trained[True].state_dict().keys()
    for name, weight in best.state_dict().items():
        assert torch.equal(weight, models_trained[True].state_dict()[name]), name


def test_the_tracker_logs_loss_learning_rate_and_validation_into_the_stage_folder(tmp_path, synthetic, tiny_teacher,
                                                                                   tiny_tokenizer):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=2, tracker="tensorboard"), tmp_path)
    (logs,) = (tmp_path / "tensorboard").iterdir()
    events = EventAccumulator(str(logs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/accuracy", "val/loss"} <= tags
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx([e["accuracy"] for e in history["epochs"]])
    assert len(events.Scalars("train/loss")) == len(history["steps"]) // trainer.LOG_EVERY


def test_tracker_none_writes_no_logs(tmp_path, synthetic, tiny_teacher, tiny_tokenizer):
    trainer.train(tiny_teacher, synthetic, tiny_tokenizer, _settings(epochs=1, tracker="none"), tmp_path)
    assert not (tmp_path / "tensorboard").exists()


def test_a_tracker_whose_package_is_missing_is_refused_before_any_work(monkeypatch):
    import accelerate.utils

    from helpers.pipeline.checks import check_tracker

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    with pytest.raises(ConfigError, match="tracker 'wandb' needs its package: pip install wandb"):
        check_tracker("wandb")
    check_tracker("none")
