"""How long the distill stage's CPU part takes for a profile's settings, at bert-base and DistilBERT shapes.

    python bench/cpu_part.py                 # subset's n_speed, n_cpu_test, max_length, eval_batch_size
    python bench/cpu_part.py --profile full
    python bench/cpu_part.py --run runs/quick --compare-onnx   # a real run's models; with and without the ONNX rows

The CPU part is the student's ONNX export (helpers.serve.export.student_copies, with onnxruntime installed)
and `model_comparison.compare`: the student quantized to int8, the fp32 teacher and student and every CPU copy timed on `n_speed` test reviews, the CPU copies
scored on `n_cpu_test` reviews of each test set. On a GPU runtime (Colab's T4) it runs on the runtime's
CPU. The models have the hub profiles' real shapes (BertConfig() and DistilBertConfig() defaults) with
random weights, as the offline hub-profile test builds them; the test reviews are the committed sample's
(and the shipped short sentences), tokenized with the uncased WordPiece vocabulary that bert-base and
MiniLM-L6 share. The other models' probabilities are placeholders (0.5): compare only scores them, and
only the time is measured here. With --run, a finished run's own teacher, student and test sets instead.
--compare-onnx times it twice in one process, without the ONNX export and rows (as without onnxruntime
installed) and with them, and prints the ratio; the export's own seconds are printed too (05's export cell
reuses those copies, so a run exports its student once). Prints the seconds and what they rest on.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.core import models
from helpers.data import extra_sets, imdb
from helpers.distill import model_comparison
from helpers.evaluate import baseline, scored_sets
from helpers.runs.config import resolve_params  # noqa: E402
from helpers.runs.run_folder import load_run  # noqa: E402
from helpers.serve import export
from helpers.tokens import tokens


def hub_shapes(params):
    """bert-base and DistilBERT with random weights, the committed test reviews and the profile's extra sets."""
    tokenizer = tokens.load_tokenizer(models.MINILM, [])
    torch.manual_seed(0)
    trained = {"teacher": BertForSequenceClassification(BertConfig(num_labels=2)).eval(),
               "student": DistilBertForSequenceClassification(DistilBertConfig(num_labels=2)).eval()}
    test = imdb.load_imdb("sample")["test"]
    frames = {"test": test.head(params.n_test or len(test)), **extra_sets.load_extra_tests(params.extra_test)}
    return trained, frames, tokens.tokenize_splits(frames, tokenizer, params.max_length, params.truncation_head), tokenizer


def run_models(run):
    """A finished run's own teacher and student, test split and extra sets."""
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    trained = {name: models.load_trained(run.require(stage, "model")) for name, stage in
               (("teacher", "train"), ("student", "distill"))}
    frames = scored_sets.test_frames(run)
    return trained, frames, scored_sets.tokenized_sets(run, frames, tokenizer), tokenizer


def timed_compare(trained, frames, sets, tokenizer, params, onnx=True):
    """Seconds of the CPU part (with `onnx`, the student's ONNX export and its rows too), and the comparison."""
    sample = imdb.load_imdb("sample")["train"]
    bag_of_words = baseline.fit_baseline(sample["text"][:800], sample["label"][:800], sample["text"][800:1000],
                                         sample["label"][800:1000], 0)
    _, timed = scored_sets.cpu_samples(len(sets["test"]), params.n_cpu_test, params.n_speed, params.seed)
    n_params, size_mb, speed = baseline.footprint(bag_of_words, [frames["test"]["text"].iloc[i] for i in timed])
    probs = {name: {who: np.full(len(ds), 0.5) for who in ("baseline", "teacher", "student")} for name, ds in sets.items()}
    with tempfile.TemporaryDirectory() as folder:
        for name, model in trained.items():
            model.save_pretrained(Path(folder) / name)
        started = time.perf_counter()
        onnx_dir = None
        if onnx:  # as the distill stage does with the export extra installed: the student's ONNX copies first
            onnx_dir = Path(folder) / "onnx"
            onnx_dir.mkdir()
            export.write_copies(trained["student"], onnx_dir)
            print(f"  the student's ONNX copies written in {time.perf_counter() - started:.1f} s (part of the time below)")
        comparison = model_comparison.compare({name: (model, Path(folder) / name) for name, model in trained.items()},
                                     dict(sets), probs, tokenizer, params,
                                     {"params": n_params, "size_mb": size_mb, "reviews_per_s": speed}, onnx_dir)
        return time.perf_counter() - started, comparison


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="subset", help="whose settings, at bert-base and DistilBERT shapes")
    parser.add_argument("--run", help="a finished run folder: its own models and test sets, its settings")
    parser.add_argument("--compare-onnx", action="store_true", help="also time it without the ONNX Runtime rows")
    args = parser.parse_args(argv)
    run = load_run(args.run) if args.run else None
    params = run.params if run else resolve_params(args.profile)
    trained, frames, sets, tokenizer = run_models(run) if run else hub_shapes(params)
    variants = [False, True] if args.compare_onnx else [True]
    seconds = {}
    for onnx in variants:
        seconds[onnx], comparison = timed_compare(trained, frames, sets, tokenizer, params, onnx)
        reviews = {name: result["reviews"] for name, result in comparison["extra_test_sets"].items()}
        print(f"{args.run or args.profile}: CPU part {seconds[onnx]:.1f} s on {torch.get_num_threads()} threads "
              f"({'with' if onnx else 'without'} the ONNX rows); max_length {params.max_length}, n_speed "
              f"{params.n_speed}, n_cpu_test {params.n_cpu_test}; test {comparison['reviews']}, extra sets {reviews}")
        for name, row in comparison["models"].items():
            print(f"  {name}: {row['reviews_per_s']} reviews/s, {row['size_mb']} MB")
    if args.compare_onnx:
        print(f"the ONNX rows add {seconds[True] - seconds[False]:.1f} s ({seconds[True] / seconds[False]:.2f}x)")
    return seconds


if __name__ == "__main__":
    main()
