"""Shared fixtures. Everything here runs offline: no test may reach the Hugging Face hub."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.core import models
from helpers.data import imdb
from helpers.runs.config import resolve_params  # noqa: E402
from helpers.tokens import tokens


@pytest.fixture(scope="session")
def sample():
    """The committed IMDB sample: {'train': frame, 'test': frame}."""
    return imdb.load_imdb("sample")


@pytest.fixture(scope="session")
def tiny_tokenizer(sample):
    return tokens.load_tokenizer(models.TINY, sample["train"]["text"].tolist()[:300])


@pytest.fixture
def tiny_teacher(tiny_tokenizer):
    return models.load_teacher(models.TINY, tiny_tokenizer, seed=0)


@pytest.fixture
def smoke_params():
    return resolve_params("smoke")


def _synthetic(tokenizer, n, seed):
    """Reviews whose label is given away by one word: any working loop learns it in an epoch or two."""
    rng = np.random.default_rng(seed)
    filler = "the film story actor scene plot music camera ending script".split()
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for i in range(n):
        label = i % 2
        words = list(rng.choice(filler, size=rng.integers(5, 30)))
        words.insert(int(rng.integers(0, len(words))), "excellent" if label else "terrible")
        encoded = tokenizer(" ".join(words), return_token_type_ids=False)
        rows["input_ids"].append(encoded["input_ids"])
        rows["attention_mask"].append(encoded["attention_mask"])
        rows["labels"].append(label)
    return datasets.Dataset.from_dict(rows)


@pytest.fixture(scope="session")
def synthetic(tiny_tokenizer):
    return datasets.DatasetDict(train=_synthetic(tiny_tokenizer, 192, 0), val=_synthetic(tiny_tokenizer, 64, 1))


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend this CPU has (or lacks) bf16 instructions and that bf16 products take `bf16_seconds`
    (fp32: 1 s); the real timing is uncached around the test."""
    from helpers.core import precision

    def pretend(bf16_flag, bf16_seconds=None):
        for flag in precision.BF16_CPU_FLAGS:
            monkeypatch.setattr(torch.cpu, flag, lambda: bf16_flag, raising=False)

        def seconds(dtype):
            assert bf16_seconds is not None, "a CPU without bf16 instructions must not be timed"
            return bf16_seconds if dtype == torch.bfloat16 else 1.0
        monkeypatch.setattr(precision, "matmul_seconds", seconds)
        monkeypatch.setattr(precision, "detect_device", lambda: precision.Device("cpu", "pretend CPU"))
        precision.cpu_bf16_is_faster.cache_clear()
    yield pretend
    precision.cpu_bf16_is_faster.cache_clear()


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory):
    """A finished `smoke` run (every stage, run in this process): made once, shared by the tests that read
    a whole run folder (helpers.predict, helpers.export). Read it; never change it."""
    from helpers.pipeline import stages
    from helpers.pipeline.checks import open_run

    run = open_run("smoke", tmp_path_factory.mktemp("smoke") / "run")
    for stage in (stages.data_stage, stages.tokenize_stage, stages.train_stage, stages.evaluate_stage,
                  stages.distill_stage):
        stage(run)
    return run.dir


@pytest.fixture(scope="session")
def smoke_export_dir(smoke_run_dir, tmp_path_factory):
    """helpers.export's folder for the smoke run, the teacher exported too."""
    pytest.importorskip("onnxruntime", reason="the export extra: pip install -e .[export]")
    from helpers.serve import export

    out = tmp_path_factory.mktemp("export") / "export"
    export.export_run(smoke_run_dir, out, teacher=True)
    return out
