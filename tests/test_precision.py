"""`precision auto`'s decision table and int8's engine, with the device and platform faked."""
import numpy as np
import pytest
import torch

from helpers.core import models, precision
from helpers.core.errors import ConfigError
from helpers.core.int8 import quantization_engine, quantize_int8
from helpers.core.precision import Device, choose_precision
from helpers.train import prediction

T4 = Device("cuda", "Tesla T4", (7, 5))
V100 = Device("cuda", "Tesla V100-SXM2-16GB", (7, 0))
A100 = Device("cuda", "NVIDIA A100-SXM4-40GB", (8, 0))
H100 = Device("cuda", "NVIDIA H100 80GB HBM3", (9, 0))
MPS = Device("mps", "Apple GPU")
CPU = Device("cpu", "x86_64")


@pytest.mark.parametrize("device, expected", [(T4, "fp16"), (V100, "fp16"), (A100, "bf16"), (H100, "bf16"),
                                              (MPS, "no")])
def test_auto_on_gpus_reads_the_compute_capability(device, expected):
    choice = choose_precision("auto", device)
    assert choice.mixed_precision == expected
    assert device.name in choice.reason or device.kind == "mps"


def test_auto_on_a_t4_takes_fp16_even_where_torch_says_bf16_is_supported(monkeypatch):
    """torch.cuda.is_bf16_supported() counts emulation and answers True on a T4: it must not be asked."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert choose_precision("auto", T4).mixed_precision == "fp16"


def test_the_device_is_detected_from_torch_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (7, 5))
    assert precision.detect_device() == T4
    assert str(choose_precision("auto")) == ("precision fp16: Tesla T4 (compute capability 7.5) has no bf16 "
                                             "hardware; fp16 with loss scaling")


@pytest.mark.parametrize("setting, expected", [("fp32", "no"), ("bf16", "bf16"), ("fp16", "fp16")])
def test_an_explicit_precision_is_used_as_asked_on_a_gpu(setting, expected):
    assert choose_precision(setting, T4).mixed_precision == expected
    assert choose_precision(setting, MPS).mixed_precision == expected


def test_bf16_forced_on_a_t4_says_it_is_emulated():
    assert "emulated" in choose_precision("bf16", T4).reason
    assert "emulated" not in choose_precision("bf16", A100).reason


def test_fp16_on_the_cpu_is_the_emulation_and_says_so():
    choice = choose_precision("fp16", CPU)
    assert choice.mixed_precision == "fp16" and "emulated on the CPU" in choice.reason and "not for training" in choice.reason
    assert choose_precision("auto", CPU).mixed_precision != "fp16"  # never picked unasked


def test_a_cpu_without_bf16_instructions_takes_fp32_without_timing(cpu_with):
    cpu_with(bf16_flag=False)  # the fixture fails the test if bf16 is timed
    choice = choose_precision("auto")
    assert choice.mixed_precision == "no" and "no bf16 instructions" in choice.reason
    assert choose_precision("bf16").mixed_precision == "bf16"  # asked for explicitly: emulated, still run


@pytest.mark.parametrize("bf16_seconds, expected", [(0.5, "bf16"), (0.8, "no"), (3.0, "no")])
def test_auto_takes_bf16_on_a_cpu_only_where_it_is_measured_faster(cpu_with, bf16_seconds, expected):
    cpu_with(bf16_flag=True, bf16_seconds=bf16_seconds)  # 2x, 1.25x (below the 1.3x bar) and 3x slower
    assert choose_precision("auto").mixed_precision == expected


def test_cpu_bf16_timing_is_real():
    assert 0 < precision.matmul_seconds(torch.float32) < 1


@pytest.mark.parametrize("machine, supported, expected", [
    ("x86_64", ["qnnpack", "onednn", "x86", "fbgemm"], "x86"),
    ("AMD64", ["fbgemm", "qnnpack"], "fbgemm"),  # an older torch on Windows: no "x86" engine yet
    ("arm64", ["qnnpack"], "qnnpack"),  # Apple Silicon
    ("aarch64", ["qnnpack", "none"], "qnnpack"),  # Linux on ARM (Graviton, Ampere Altra)
])
def test_int8_runs_on_the_platforms_engine(machine, supported, expected):
    assert quantization_engine(machine, supported) == expected


def test_a_platform_without_an_int8_engine_is_refused_by_name():
    with pytest.raises(ConfigError, match="no engine for this 'riscv64' CPU"):
        quantization_engine("riscv64", ["none"])


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_int8_student_predicts_like_the_fp32_one_on_either_engine(machine, monkeypatch, tiny_teacher,
                                                                      tiny_tokenizer, synthetic):
    """x86 builds of torch carry qnnpack too, so the ARM path runs here for real with the platform faked."""
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.quantized, "engine", torch.backends.quantized.engine)  # restored after
    student = models.distil_from_teacher(tiny_teacher)
    int8 = quantize_int8(student)
    assert torch.backends.quantized.engine == quantization_engine()
    fp32 = prediction.predict_logits(student, synthetic["val"], tiny_tokenizer, 16)
    logits, _ = prediction.timed_cpu_logits(int8, synthetic["val"], tiny_tokenizer, 16)
    assert np.abs(logits - fp32).max() < 0.05
