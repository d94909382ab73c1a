"""Shared fixtures. Everything here runs offline: no test may reach the Hugging Face hub."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from helpers import data, models  # noqa: E402
from helpers.config import resolve_params  # noqa: E402


@pytest.fixture(scope="session")
def sample():
    """The committed IMDB sample: {'train': frame, 'test': frame}."""
    return data.load_imdb("sample")


@pytest.fixture(scope="session")
def tiny_tokenizer(sample):
    return models.load_tokenizer(models.TINY, sample["train"]["text"].tolist()[:300])


@pytest.fixture
def tiny_teacher(tiny_tokenizer):
    return models.load_teacher(models.TINY, tiny_tokenizer, seed=0)


@pytest.fixture
def smoke_params():
    return resolve_params("smoke")
