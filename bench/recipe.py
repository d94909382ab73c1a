"""The training recipe's ablation, chosen on held-out training reviews: each lever's effect on the teacher.

    python bench/recipe.py --variants quick,constant-lr --seeds 3          # a lever against quick, 3 seeds
    python bench/recipe.py --gap --seeds 3                                 # the 32-step gap (train_speed's setting)
    python bench/recipe.py --variants quick --seeds 3 --test               # the chosen recipe's test figures, once
    python bench/recipe.py --imdb /path/to/imdb --n-select 1000 --params '{"model": "/path/to/minilm"}'

Each run trains one teacher exactly as the train stage does (helpers.train.trainer.train) with the `quick`
profile's parameters, the variant's overrides and the seed, on the split `quick` draws with that seed (the
committed sample; its 10% validation split still picks the best epoch). Variants are ranked on a *selection
set*: `--n-select` reviews drawn (stratified, one fixed seed) from the whole IMDB training split (`--imdb`,
default ../shared/data/imdb) after removing every review the committed sample holds (its train, test and
unlabelled reviews, compared after `clean_review`). No test review is scored unless `--test` is given: run it for
the chosen recipe only, so that the test figures are reported once and chose nothing.

The table gives, per variant, the median selection accuracy over seeds with its spread, and the paired
difference against `--reference` on the same reviews (helpers.evaluate.paired; the seeds' reviews pooled: each
seed's model answers every selection review) with its 95% bootstrap interval and McNemar p-value, and the
difference per seed: the interval covers the draw of reviews, not of seeds, so a lever counts only where the
seeds agree in sign. Finished runs
are appended to bench/results/recipe.jsonl (git-ignored; `--out` moves it) with their selection probabilities,
so a run cut short keeps what it measured and `--table-only` redraws the table from the file.
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
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from helpers.core import models, sentiment  # noqa: E402
from helpers.core.accelerators import make_accelerator  # noqa: E402
from helpers.data import extra_sets, imdb  # noqa: E402
from helpers.data.imdb import SAMPLE_DIR, clean_review, stratified_sample  # noqa: E402
from helpers.evaluate import calibration, metrics, paired  # noqa: E402
from helpers.runs.config import resolve_params  # noqa: E402
from helpers.tokens import tokens  # noqa: E402
from helpers.train import prediction  # noqa: E402
from helpers.train.trainer import TrainSettings, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recipe.jsonl"
IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
SELECTION_SEED = 2011  # one selection set for every variant and seed, so that differences are paired
QUIET = {"checkpoint_every": 0, "tracker": "none", "extra_test": ""}
# name -> overrides of the quick profile ("quick" is the profile as it is)
VARIANTS = {
    "quick": {},
    "pooler-head": {"head": "pooler"},
    "plain-truncation": {"truncation_head": 1.0},
    "min-steps-0": {"min_steps": 0},
    "constant-lr": {"lr_schedule": "constant"},
    "random-batches": {"group_by_length": False},
    "fp32": {"precision": "fp32"},
    "attention-dropout": {"attention_dropout": 0.1},
    "val-0.2": {"val_fraction": 0.2},
    "lr-5e-5": {"lr": 5e-5},
    "lr-2e-4": {"lr": 2e-4},
}
# bench/train_speed.py's setting: 512 training reviews (569 before the 10% validation split), batch 16, 32 steps,
# BERT's own pooler head; "seed-report" is that benchmark's plain loop (constant rate without warmup, fp32, random
# batches, attention dropout as pre-trained) and each other variant changes one of those four from ours
GAP = {"n_train": 569, "batch_size": 16, "head": "pooler", "min_steps": 0, "truncation_head": 1.0}
GAP_VARIANTS = {
    "ours": {},
    "constant-lr": {"lr_schedule": "constant"},
    "random-batches": {"group_by_length": False},
    "fp32": {"precision": "fp32"},
    "attention-dropout": {"attention_dropout": 0.1},
    "seed-report": {"lr_schedule": "constant", "warmup_ratio": 0.0, "group_by_length": False, "precision": "fp32",
                    "attention_dropout": 0.1},
}


def selection_set(imdb_folder, n):
    """`n` IMDB training reviews (stratified, SELECTION_SEED) that the committed sample does not hold."""
    shipped = pd.concat([pd.read_parquet(SAMPLE_DIR / f"{name}.parquet") for name in ("train", "test", "unlabelled")])
    held = set(shipped["text"].map(clean_review))
    pool = pd.read_parquet(Path(imdb_folder) / "train.parquet", columns=["text", "label"])
    pool = pool[~pool["text"].map(clean_review).isin(held)].drop_duplicates("text")
    if len(pool) < n:
        raise SystemExit(f"--n-select {n}: only {len(pool)} IMDB training reviews lie outside the sample")
    return stratified_sample(pool, n, SELECTION_SEED).reset_index(drop=True)


def one_run(params, selection, scored_test):
    """Train one teacher; its best epoch's validation accuracy, selection probabilities and calibration, and with
    `scored_test` its test and short-sentence accuracy."""
    splits = {**imdb.make_splits(params), "selection": selection}
    if scored_test:
        splits["short"] = extra_sets.load_extra_tests("short")["short"]
    else:
        del splits["test"]
    tokenizer = tokens.prepare_tokenizer(params, splits["train"]["text"].tolist())
    tokenized = tokens.tokenize_splits(splits, tokenizer, params.max_length, params.truncation_head)
    started = time.perf_counter()
    model = models.load_teacher(params.model, tokenizer, params.seed, params.attention_dropout, params.head)
    settings = TrainSettings.from_params(params)
    with tempfile.TemporaryDirectory() as out_dir:
        history = train(model, tokenized, tokenizer, settings, out_dir)
        best = models.load_trained(Path(out_dir) / "model")
    seconds = time.perf_counter() - started
    scored = [name for name in splits if name != "train"]
    logits = prediction.predict_sets(best, {name: tokenized[name] for name in scored}, tokenizer,
                                     settings.eval_batch_size, make_accelerator(settings))
    temperature = calibration.fit_temperature(logits["val"], tokenized["val"]["labels"])
    probs = {name: sentiment.positive_probability(logits[name], temperature) for name in scored}
    accuracy = {name: metrics.classification_metrics(splits[name]["label"].to_numpy(), probs[name])["accuracy"]
                for name in scored if name != "val"}
    return {"val_best": max(epoch["accuracy"] for epoch in history["epochs"]), "n_val": len(splits["val"]),
            **accuracy, "ece_selection": calibration.expected_calibration_error(probs["selection"], selection["label"]),
            "temperature": temperature, "steps": len(history["steps"]), "train_seconds": round(seconds, 1),
            "selection_probs": np.round(probs["selection"], 5).tolist()}


def ranking(rows, labels, reference):
    """One line per variant, best median selection accuracy first, with its paired difference against `reference`."""
    by_variant = {}
    for row in rows:
        by_variant.setdefault(row["variant"], {})[row["seed"]] = row
    lines = [f"{'variant':18} {'seeds':>5} {'select':>7} {'min':>6} {'max':>6} {'val':>6} {'ece':>6} {'sec':>6}  "
             f"paired difference against {reference} (95% CI, McNemar p)"]
    order = sorted(by_variant, key=lambda name: -statistics.median(r["selection"] for r in by_variant[name].values()))
    for name in order:
        runs = by_variant[name]
        accuracies = [r["selection"] for r in runs.values()]
        median = {key: statistics.median(r[key] for r in runs.values()) for key in ("val_best", "ece_selection",
                                                                                  "train_seconds")}
        line = (f"{name:18} {len(runs):>5} {statistics.median(accuracies):7.3f} {min(accuracies):6.3f} "
                f"{max(accuracies):6.3f} {median['val_best']:6.3f} {median['ece_selection']:6.3f} "
                f"{median['train_seconds']:6.0f}  ")
        lines.append(line + paired_text(runs, by_variant.get(reference, {}), labels, name == reference))
    return "\n".join(lines)


def paired_text(runs, reference_runs, labels, is_reference):
    """The paired difference over the seeds both variants ran, each seed's model answering every review."""
    seeds = sorted(set(runs) & set(reference_runs))
    if is_reference or not seeds:
        return "(reference)" if is_reference else "(no common seed)"
    stats = paired.paired_difference(np.tile(labels, len(seeds)),
                                     np.concatenate([runs[s]["selection_probs"] for s in seeds]),
                                     np.concatenate([reference_runs[s]["selection_probs"] for s in seeds]))
    per_seed = ", ".join(f"{runs[s]['selection'] - reference_runs[s]['selection']:+.3f}" for s in seeds)
    low, high = stats["ci95"]
    return (f"{stats['difference']:+.3f} ({low:+.3f} to {high:+.3f}, p {stats['p_mcnemar']:.2g}); "
            f"per seed {per_seed}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", help="comma-separated names from VARIANTS (with --gap: GAP_VARIANTS); default all")
    parser.add_argument("--gap", action="store_true", help="bench/train_speed.py's 32-step setting and its variants")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 42, 43, ... per variant")
    parser.add_argument("--imdb", type=Path, default=IMDB, help="the IMDB folder the selection set is drawn from")
    parser.add_argument("--n-select", type=int, default=2000, help="reviews in the selection set")
    parser.add_argument("--reference", help="the variant differences are paired against (default: quick, or ours)")
    parser.add_argument("--test", action="store_true", help="also score the test reviews and short sentences: only "
                                                            "for the chosen recipe, once")
    parser.add_argument("--params", default="{}", help="JSON overrides for every variant (e.g. a model folder)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where finished runs are appended (JSON lines)")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs in --out; train nothing")
    args = parser.parse_args(argv)
    variants = GAP_VARIANTS if args.gap else VARIANTS
    names = args.variants.split(",") if args.variants else list(variants)
    if unknown := set(names) - set(variants):
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(variants)}")
    reference = args.reference or ("ours" if args.gap else "quick")
    selection = selection_set(args.imdb, args.n_select)
    base = {**QUIET, **(GAP if args.gap else {}), **json.loads(args.params)}
    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.table_only else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in ([] if args.table_only else range(42, 42 + args.seeds)):
        for name in names:
            params = resolve_params("quick", {**base, **variants[name], "seed": seed})
            row = {"variant": name, "seed": seed, "n_train": params.n_train, **one_run(params, selection, args.test)}
            rows.append(row)
            with open(args.out, "a") as out:
                out.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "selection_probs"}), flush=True)
    print(ranking(rows, selection["label"].to_numpy(), reference))
    return rows


if __name__ == "__main__":
    main()
