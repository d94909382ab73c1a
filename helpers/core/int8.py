"""Int8 on the CPU: the quantized engine of this processor, and the dynamically quantized copy of a model that the
distill stage times and scores and helpers.predict serves."""
import copy
import platform
import warnings

import torch

from helpers.core.accelerators import plain_model
from helpers.core.errors import ConfigError

QUANTIZED_ENGINES = {"x86": ("x86", "fbgemm"), "arm": ("qnnpack",)}  # preferred first


def quantize_int8(model):
    """A CPU copy of `model` whose linear layers hold int8 weights, activations quantized on the fly (dynamic
    quantization: no calibration data), made of the plain fp32 model (`plain_model`), never of one still wrapped in a
    loop's bf16/fp16 autocast. torch 2.13 warns that its quantized tensor types will move out of torch (to torchao);
    the warning is silenced here and noted in the README, since the pinned torch runs it fine."""
    torch.backends.quantized.engine = quantization_engine()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(plain_model(model)).to("cpu").eval(),
                                                      {torch.nn.Linear}, dtype=torch.qint8)


def quantization_engine(machine=None, supported=None):
    """The quantized engine int8 models run on here: x86 on Intel/AMD CPUs, qnnpack on ARM."""
    machine = (machine or platform.machine()).lower()
    supported = torch.backends.quantized.supported_engines if supported is None else supported
    family = "x86" if machine in ("x86_64", "amd64", "i386", "i686", "x86") else \
        "arm" if machine.startswith(("arm", "aarch64")) else None
    for engine in QUANTIZED_ENGINES.get(family, ()):
        if engine in supported:
            return engine
    raise ConfigError(f"int8 quantization has no engine for this {machine!r} CPU (this torch has "
                      f"{', '.join(supported) or 'none'}); the distill stage's int8 student needs an x86 or ARM CPU")
