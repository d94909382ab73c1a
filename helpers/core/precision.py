"""Which number formats the models run in: `precision auto` as one decision table, `choose_precision` (the table,
with the reason for each row: docs/how_it_works.md). An explicit `fp32`, `bf16` or `fp16` is used as asked; fp16 on a
CPU is an emulation of a T4's (helpers.core.accelerators gives it a loss scaler), slow and for checking, not training.
The weights stay fp32 in every case: bf16/fp16 run under autocast (mixed precision)."""
import functools
import platform
import time
from dataclasses import dataclass

import torch

BF16_CPU_FLAGS = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's probes of the CPU
BF16_MIN_SPEEDUP = 1.3  # below this, autocast's casts eat what the faster matrix products save
BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first CUDA GPUs with bf16 in hardware
ACCELERATE_NAMES = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # our names -> Accelerate's mixed_precision


@dataclass(frozen=True)
class Device:
    """What the precision decision reads of the device: its kind, name and CUDA compute capability."""
    kind: str  # "cuda", "mps" or "cpu"
    name: str
    capability: tuple = None  # (major, minor) for CUDA GPUs


@dataclass(frozen=True)
class Choice:
    mixed_precision: str  # as Accelerate names it: "no", "bf16" or "fp16"
    reason: str

    def __str__(self):
        shown = "fp32" if self.mixed_precision == "no" else self.mixed_precision
        return f"precision {shown}: {self.reason}"


def detect_device():
    """The device Accelerate will train on in this process."""
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        return Device("cuda", torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Device("mps", "Apple GPU")
    return Device("cpu", platform.processor() or platform.machine())


def choose_precision(setting, device=None):
    """The Choice for a `precision` parameter on `device` (default: this machine's)."""
    device = device or detect_device()
    if setting != "auto":
        note = ""
        if setting == "fp16" and device.kind == "cpu":
            note = ("; emulated on the CPU: a T4's fp16 numerics and loss scaling on slow CPU fp16 kernels, for checking "
                    "that path, not for training (the stage estimates say how long it takes)")
        if setting == "bf16" and device.kind == "cuda" and device.capability < BF16_MIN_CAPABILITY:
            note = f"; {device.name} has no bf16 hardware, so it is emulated and slow (auto would pick fp16)"
        return Choice(ACCELERATE_NAMES[setting], f"asked for explicitly{note}")
    if device.kind == "cuda":
        major, minor = device.capability
        if device.capability >= BF16_MIN_CAPABILITY:
            return Choice("bf16", f"{device.name} (compute capability {major}.{minor}) has bf16 in hardware")
        return Choice("fp16", f"{device.name} (compute capability {major}.{minor}) has no bf16 hardware; "
                              "fp16 with loss scaling")
    if device.kind == "mps":
        return Choice("no", "mixed precision on Apple GPUs is new in PyTorch; pass precision fp16 to try it")
    if not cpu_has_bf16_instructions():
        return Choice("no", "this CPU has no bf16 instructions (AMX, AVX-512 BF16): bf16 would be emulated")
    if cpu_bf16_is_faster():
        return Choice("bf16", f"this CPU has bf16 instructions and a timed product ran >= {BF16_MIN_SPEEDUP}x faster")
    return Choice("no", f"this CPU has bf16 instructions, but a timed product ran < {BF16_MIN_SPEEDUP}x faster than fp32")


def cpu_has_bf16_instructions():
    return any(getattr(torch.cpu, flag, lambda: False)() for flag in BF16_CPU_FLAGS)


@functools.cache
def cpu_bf16_is_faster():
    """Whether bf16 matrix products run at least BF16_MIN_SPEEDUP times faster than fp32 on this CPU (asked only of
    CPUs with bf16 instructions; timed once per process on one MiniLM-sized product)."""
    return matmul_seconds(torch.float32) / matmul_seconds(torch.bfloat16) >= BF16_MIN_SPEEDUP


def matmul_seconds(dtype, shape=(512, 384, 1536), device="cpu", repeats=5):
    """Best time of `repeats` (m x k) @ (k x n) products in `dtype` on `device`; the default shape is a
    BERT feed-forward layer (MiniLM-sized). The training benchmark times its matmul peak with it too."""
    m, k, n = shape
    a, b = torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype)
    return best_seconds(lambda: torch.mm(a, b), device, repeats)


def best_seconds(work, device="cpu", repeats=5):
    """Best wall time of `repeats` calls of `work()` on `device` (the first call, before them, warms up)."""
    # CUDA runs asynchronously: time from an idle device until it is idle again
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    best = float("inf")
    for _ in range(repeats + 1):
        sync()
        started = time.perf_counter()
        work()
        sync()
        best = min(best, time.perf_counter() - started)
    return best
