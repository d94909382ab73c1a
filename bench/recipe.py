"""The training recipe's ablation: each lever's effect on the teacher's learning curve and on `quick`.

    python bench/recipe.py                                   # every variant, the learning curve, 3 seeds
    python bench/recipe.py --variants quick                  # the quick profile's own learning curve
    python bench/recipe.py --variants base,cls --sizes 2000 --seeds 1      # a quick look
    python bench/recipe.py --model /path/to/minilm --sizes 250,500         # weights from a folder

Each run is one teacher trained exactly as the train stage trains it (helpers.train.trainer.train,
the `quick` profile's parameters with the variant's overrides and `n_train` = size), on the
split `quick` draws with that seed, then scored on the 1,000 committed test reviews and the
short sentences, beside the TF-IDF baseline fitted on the same split (C on validation).
ECE is measured after the temperature fitted on validation, as the evaluate stage does.

Variants are parameter overrides (`VARIANTS`), plus `fresh-pooler`, which re-initialises BERT's
pooler before training (a lever measured here, not a parameter). Every finished run is appended
to bench/results/recipe.jsonl at once (git-ignored; `--out` moves it), so a run cut short keeps
what it measured; the table printed at the end gives the median over seeds per variant and size.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from helpers.core import models, sentiment
from helpers.core.accelerators import make_accelerator  # noqa: E402
from helpers.data import extra_sets, imdb
from helpers.evaluate import baseline, calibration, metrics
from helpers.runs.config import resolve_params  # noqa: E402
from helpers.tokens import tokens
from helpers.train import prediction
from helpers.train.trainer import TrainSettings, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recipe.jsonl"
QUIET = {"checkpoint_every": 0, "tracker": "none", "extra_test": ""}
# name -> overrides of the quick profile; head and min_steps always named, so a variant means the same
# whatever the profile's current values ("quick" is the profile as it is)
BEFORE = {"head": "pooler", "min_steps": 0}  # the recipe before this ablation
VARIANTS = {
    "quick": {},
    "base": BEFORE,
    "fresh-pooler": BEFORE,
    "cls": {"head": "cls", "min_steps": 0},
    "base+min200": {"head": "pooler", "min_steps": 200},
    "cls+min200": {"head": "cls", "min_steps": 200},
    "cls+min200+lr5e-5": {"head": "cls", "min_steps": 200, "lr": 5e-5},
    "cls+min200+lr2e-4": {"head": "cls", "min_steps": 200, "lr": 2e-4},
    "cls+min200+llrd0.8": {"head": "cls", "min_steps": 200, "layer_decay": 0.8},
    "cls+min200+warm0": {"head": "cls", "min_steps": 200, "warmup_ratio": 0.0},
    "cls+min200+head-only": {"head": "cls", "min_steps": 200, "truncation_head": 1.0},
    "cls+min200+2ep": {"head": "cls", "min_steps": 200, "epochs": 2},
    "cls+min200+llrd0.8+512": {"head": "cls", "min_steps": 200, "layer_decay": 0.8, "max_length": 512},
    "cls+min450+llrd0.8": {"head": "cls", "min_steps": 450, "layer_decay": 0.8},
    "cls+min200+llrd0.8+3ep+lr5e-5": {"head": "cls", "min_steps": 200, "layer_decay": 0.8, "epochs": 3, "lr": 5e-5},
}


def split_for(params):
    """The run's splits, its tokenizer and tokenized splits (test and short sentences included)."""
    splits = imdb.make_splits(params)
    splits["short"] = extra_sets.load_extra_tests("short")["short"]
    tokenizer = tokens.prepare_tokenizer(params, splits["train"]["text"].tolist())
    tokenized = tokens.tokenize_splits(splits, tokenizer, params.max_length, params.truncation_head)
    return splits, tokenizer, tokenized


def baseline_scores(splits, seed):
    fitted = baseline.fit_baseline(splits["train"]["text"], splits["train"]["label"], splits["val"]["text"],
                                   splits["val"]["label"], seed)
    return {name: _accuracy(splits[name]["label"], baseline.baseline_proba(fitted, splits[name]["text"]))
            for name in ("test", "short")}


def _accuracy(labels, prob_positive):
    return metrics.classification_metrics(np.asarray(labels), prob_positive)["accuracy"]


def one_run(variant, params, splits, tokenizer, tokenized):
    """Train one teacher; its accuracies, calibration error and seconds."""
    started = time.perf_counter()
    model = models.load_teacher(params.model, tokenizer, params.seed, params.attention_dropout, params.head)
    if variant == "fresh-pooler":
        model.bert.pooler.dense.reset_parameters()
    settings = TrainSettings.from_params(params)
    with tempfile.TemporaryDirectory() as out_dir:
        history = train(model, tokenized, tokenizer, settings, out_dir)
        best = models.load_trained(Path(out_dir) / "model")
    train_seconds = time.perf_counter() - started
    logits = prediction.predict_sets(best, {name: tokenized[name] for name in ("val", "test", "short")}, tokenizer,
                                     settings.eval_batch_size, make_accelerator(settings))
    temperature = calibration.fit_temperature(logits["val"], tokenized["val"]["labels"])
    test_probs = sentiment.positive_probability(logits["test"], temperature)
    return {"test": _accuracy(splits["test"]["label"], test_probs),
            "short": _accuracy(splits["short"]["label"], sentiment.positive_probability(logits["short"])),
            "val": history["epochs"][-1]["accuracy"], "epochs": len(history["epochs"]),
            "steps": len(history["steps"]), "ece": calibration.expected_calibration_error(test_probs, splits["test"]["label"]),
            "temperature": temperature, "train_seconds": round(train_seconds, 1)}


def median_table(rows):
    """Median over seeds per (variant, size): teacher test/short accuracy, baseline, ECE, seconds."""
    groups = {}
    for row in rows:
        groups.setdefault((row["variant"], row["n_train"]), []).append(row)
    lines = [f"{'variant':24} {'n_train':>7} {'seeds':>5} {'test':>6} {'min':>6} {'base':>6} {'short':>6} "
             f"{'ece':>6} {'sec':>6}"]
    for (variant, size), runs in groups.items():
        med = {key: statistics.median(run[key] for run in runs) for key in
               ("test", "baseline_test", "short", "ece", "train_seconds")}
        lines.append(f"{variant:24} {size:>7} {len(runs):>5} {med['test']:6.3f} {min(r['test'] for r in runs):6.3f} "
                     f"{med['baseline_test']:6.3f} {med['short']:6.3f} {med['ece']:6.3f} {med['train_seconds']:6.1f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from VARIANTS")
    parser.add_argument("--sizes", default="250,500,1000,2000", help="n_train values (the sweep's sizes)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 42, 43, ... per variant and size")
    parser.add_argument("--model", default=None, help="the teacher's weights (default: the quick profile's)")
    parser.add_argument("--precision", default=None, help="override the precision (default: auto)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where finished runs are appended (JSON lines)")
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    extra = {key: value for key, value in (("model", args.model), ("precision", args.precision)) if value}
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for seed in range(42, 42 + args.seeds):
            prepared = {}  # one split and tokenization per (size, seed, truncation)
            for variant in args.variants.split(","):
                params = resolve_params("quick", {**QUIET, **extra, **VARIANTS[variant], "n_train": size, "seed": seed})
                key = params.truncation_head
                if key not in prepared:
                    splits, tokenizer, tokenized = split_for(params)
                    prepared[key] = (splits, tokenizer, tokenized, baseline_scores(splits, seed))
                splits, tokenizer, tokenized, base = prepared[key]
                row = {"variant": variant, "n_train": size, "seed": seed, **one_run(variant, params, splits, tokenizer,
                                                                                      tokenized),
                       "baseline_test": base["test"], "baseline_short": base["short"]}
                rows.append(row)
                with open(args.out, "a") as out:
                    out.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(median_table(rows))
    return rows


if __name__ == "__main__":
    main()
