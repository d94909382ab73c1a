"""The hub profiles (`subset`, `full`) run end to end by name, offline, against a filled hub cache.

The cache (tests/hub_cache.py) holds stanfordnlp/imdb, bert-base-uncased and
distilbert-base-uncased under their own names, at their real sizes, so the profiles' own data,
model names, max_length, epochs and learning rates go through unchanged. Only the sizes that make
a run cheap are overridden: n_train, n_test and batch_size (one optimizer step an epoch), and
extra_test (off); precision is pinned to fp32 so the test means the same on every CPU. `subset` (the
Colab profile) runs all five stages; `full` stops after evaluate: its distill stage is subset's code at
other sizes, and distilling and exporting a second DistilBERT-base would add as much time again.
"""
import json
import os
import shutil
import subprocess
import sys

import hub_cache
import pandas as pd
import pytest

from helpers.runs.config import read_profile, resolve_params
from helpers.tokens.tokens import load_tokenized

pytestmark = pytest.mark.slow

N_TEST = 6  # 4 short reviews and 2 longer than 512 word pieces: every prediction pass pads to max_length
# the size knobs only; precision pinned to fp32. extra_test off: the profiles' 1,000 extra sentences,
# scored by three bert-sized models, would double each run's time and test nothing profile-specific
# n_unlabelled: a few, so the hub's 'unsupervised' split is read as the profiles read it
SIZES = {"n_test": N_TEST, "precision": "fp32", "extra_test": "", "n_unlabelled": 4}
RUNS = {  # profile: overrides, and the max_length the profile itself sets; one optimizer step an epoch
    # subset: val_fraction 0.1 of 12 gives ceil(1.2) = 2 validation reviews (a stratified split needs one
    # per label) and 10 training reviews
    "subset": ({"n_train": 12, "batch_size": 10, **SIZES}, 256),
    # full: val_fraction 0.04 of 30 gives ceil(1.2) = 2 validation reviews and 28 training reviews
    "full": ({"n_train": 30, "batch_size": 28, **SIZES}, 512),
}
STAGES = {"subset": "data,tokenize,train,evaluate,distill", "full": "data,tokenize,train,evaluate"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory, sample):
    """The filled hub cache and the IMDB frames written into it."""
    folder = tmp_path_factory.mktemp("hub") / "cache"
    frames = hub_cache.build(folder, sample, n_train=max(o["n_train"] for o, _ in RUNS.values()),
                             n_short_test=N_TEST - 2, n_long_test=2)
    yield folder, frames
    shutil.rmtree(folder)  # bert-base and distilbert-base weights: hundreds of megabytes


def _offline_env(cache_dir, home):
    """This environment, offline, reading the filled cache and nothing else of Hugging Face's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(cache_dir),
            "HF_HOME": str(home)}


@pytest.mark.parametrize("profile", list(RUNS))
def test_the_hub_profile_runs_offline_by_name(profile, cache, tmp_path):
    cache_dir, frames = cache
    overrides, max_length = RUNS[profile]
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "helpers.run", profile, "--run-dir", str(run_dir), "--stages", STAGES[profile]]
    for name, value in overrides.items():
        command += ["-p", name, str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env=_offline_env(cache_dir, tmp_path / "hf_home"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    distilled = "distill" in STAGES[profile]
    for path in ("train/model/model.safetensors", "evaluate/metrics.json", "report.html",
                 *(("distill/comparison.json", "distill/model/model.safetensors") if distilled else ())):
        assert (run_dir / path).exists(), path

    # the profile's own values, overridden only where the test says so
    params = json.loads((run_dir / "params.json").read_text())
    assert params["profile"] == profile
    assert params["params"] == resolve_params(profile, overrides).to_dict()
    assert read_profile(profile)["max_length"] == max_length == params["params"]["max_length"]
    assert (params["params"]["data"], params["params"]["model"], params["params"]["student_model"]) == \
        (hub_cache.IMDB, hub_cache.TEACHER, hub_cache.STUDENT)

    assert json.loads((run_dir / "evaluate" / "metrics.json").read_text())["n"] == N_TEST

    # the data came from the cached dataset: all of its test reviews, training reviews among its own
    assert set(pd.read_parquet(run_dir / "data" / "test.parquet")["text"]) == set(frames["test"]["text"])
    assert set(pd.read_parquet(run_dir / "data" / "train.parquet")["text"]) <= set(frames["train"]["text"])
    drawn = pd.read_parquet(run_dir / "data" / "unlabelled.parquet")
    assert len(drawn) == 4 and set(drawn["text"]) <= set(frames["unsupervised"]["text"])

    # bert-base sized teacher, distilbert-base sized student
    teacher = json.loads((run_dir / "train" / "model" / "config.json").read_text())
    assert (teacher["model_type"], teacher["hidden_size"], teacher["num_hidden_layers"]) == ("bert", 768, 12)
    if distilled:
        student = json.loads((run_dir / "distill" / "model" / "config.json").read_text())
        assert (student["model_type"], student["dim"], student["n_layers"]) == ("distilbert", 768, 6)

    # the long test reviews were cut to max_length
    stats = {row["split"]: row for row in json.loads((run_dir / "tokenize" / "length_stats.json").read_text())}
    assert stats["test"]["max"] > 512 and stats["test"]["truncated_share"] == pytest.approx(2 / N_TEST, abs=1e-3)
    assert max(len(ids) for ids in load_tokenized(run_dir / "tokenize")["test"]["input_ids"]) == max_length
    shutil.rmtree(run_dir)  # gigabytes of bert-base checkpoints; a failed run's folder stays for a look
