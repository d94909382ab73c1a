"""The student's CPU copies: PyTorch int8 against ONNX Runtime exports, step by step; helpers.predict at scale.

    python bench/export_speed.py runs/quick                       # copies: speed and paired accuracy
    python bench/export_speed.py runs/quick --scale runs/quick/export   # + helpers.predict, 1,000 vs 20,000 reviews

Every copy predicts the same seeded sample of the run's test reviews (`--reviews`, sorted by length as
every prediction path sorts them), batch `--batch-size`, `--threads` threads, interleaved over
`--rounds` rounds in this process; the median reviews/s of each is divided by PyTorch int8's (the
baseline, measured in the same rounds). The steps: torch's dynamo exporter; the TorchScript exporter
(SDPA attention); the TorchScript exporter on eager attention, then ONNX Runtime's transformer
optimizer (the graph whose attention it fuses); int8 by `quantize_dynamic` after each, and with
per-channel weights or reduce_range. Accuracy: the fp32 student, PyTorch int8 and the int8 copy
helpers.export ships, paired on the same reviews: every test review of the run and the short sentences.
With --scale, `python -m helpers.predict EXPORT --model int8` scores the test reviews repeated to 1,000 and
20,000 rows, each in its own process: peak memory (ru_maxrss) and reviews/s side by side.
Results go to bench/results/export_speed.json (git-ignored).
"""
import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers.core import models
from helpers.core.files import write_json  # noqa: E402
from helpers.core.int8 import quantize_int8
from helpers.core.sentiment import accuracy_interval  # noqa: E402
from helpers.evaluate import scored_sets
from helpers.runs.run_folder import load_run  # noqa: E402
from helpers.serve import export, onnx_backend
from helpers.tokens import tokens
from helpers.train import prediction

RESULTS = Path(__file__).resolve().parent / "results"


def onnx_variants(student, folder):
    """{step: ONNX file} for every step the docstring lists, written into `folder`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder, example = Path(folder), torch.ones((2, 16), dtype=torch.long)
    logits_only = copy.deepcopy(student).eval()
    logits_only.config.return_dict = False  # a tuple out, the logits alone: what the ONNX exporters take
    paths = {"dynamo fp32": folder / "dynamo.onnx", "torchscript sdpa fp32": folder / "sdpa.onnx",
             "torchscript eager fp32": folder / "eager.onnx", "optimized fp32": folder / "optimized.onnx"}
    dims = {name: {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")} for name in export.INPUTS}
    torch.onnx.export(logits_only, (example, example), dynamo=True, input_names=list(export.INPUTS),
                      output_names=["logits"], dynamic_shapes=dims).save(str(paths["dynamo fp32"]))
    axes = {name: {0: "batch", 1: "sequence"} for name in export.INPUTS}
    torch.onnx.export(logits_only, (example, example), str(paths["torchscript sdpa fp32"]), dynamo=False,
                      input_names=list(export.INPUTS), output_names=["logits"], opset_version=export.OPSET,
                      dynamic_axes=axes)
    export.export_onnx(student, paths["torchscript eager fp32"])
    fusions = export.optimize(paths["torchscript eager fp32"], paths["optimized fp32"], student.config)
    int8 = {}
    for source in ("dynamo fp32", "torchscript sdpa fp32", "optimized fp32"):
        int8[source.replace("fp32", "int8")] = export.quantize(paths[source], folder / f"{Path(paths[source]).stem}.int8.onnx")
    for option in ("per_channel", "reduce_range"):
        int8[f"optimized int8 {option}"] = folder / f"optimized.{option}.onnx"
        quantize_dynamic(str(paths["optimized fp32"]), str(int8[f"optimized int8 {option}"]), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **{option: True})
    return {**paths, **int8}, fusions


def timed(function, dataset):
    started = time.perf_counter()
    logits = function(dataset)
    return len(dataset) / (time.perf_counter() - started), logits


def copies_speed(run, args, folder):
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    test = tokens.load_tokenized(run.require("tokenize"))["test"]
    _, timed_rows = scored_sets.cpu_samples(len(test), None, args.reviews, run.params.seed)
    reviews = test.select(timed_rows)
    student = models.load_trained(run.require("distill", "model")).eval()
    int8 = quantize_int8(student)
    files, fusions = onnx_variants(student, folder)
    runners = {"torch fp32": lambda ds: prediction.predict_logits(student, ds, tokenizer, args.batch_size),
               "torch int8": lambda ds: prediction.predict_logits(int8, ds, tokenizer, args.batch_size)}
    for name, path in files.items():
        session = onnx_backend.make_session(path, args.threads)
        runners[name] = (lambda s: lambda ds: onnx_backend.session_logits(s, ds["input_ids"], tokenizer.pad_token_id,
                                                                         args.batch_size))(session)
    speeds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run_copy in runners.items():
            speeds[name].append(timed(run_copy, reviews)[0])
    base = np.median(speeds["torch int8"])
    rows = {name: {"reviews_per_s": float(np.median(v)), "vs_torch_int8": float(np.median(v) / base),
                   "rounds": [round(x, 2) for x in v],
                   "size_mb": round(files[name].stat().st_size / 1e6, 2) if name in files else None}
            for name, v in speeds.items()}
    return rows, fusions, runners, tokenizer


def paired_accuracy(run, runners, tokenizer):
    """Accuracy of the fp32 student, PyTorch int8 and the shipped int8 copy on every review of each test set."""
    frames = scored_sets.test_frames(run)
    sets = scored_sets.tokenized_sets(run, frames, tokenizer)
    result = {}
    for name, dataset in sets.items():
        labels = np.asarray(dataset["labels"])
        correct = {who: runners[who](dataset).argmax(-1) == labels for who in ("torch fp32", "torch int8", "optimized int8")}
        result[name] = {who: {"accuracy": float(c.mean()), "ci95": accuracy_interval(float(c.mean()), len(c)),
                              "minus_fp32_points": float(100 * (c.mean() - correct["torch fp32"].mean()))}
                        for who, c in correct.items()}
        result[name]["reviews"] = len(labels)
    return result


def predict_at_scale(run, export_dir, folder, threads):
    """helpers.predict on the test reviews repeated to 1,000 and 20,000 rows: ru_maxrss and reviews/s of each."""
    texts = pd.read_parquet(run.require("data", "test.parquet"))["text"]
    out = {}
    for rows in (1000, 20000):
        source = Path(folder) / f"reviews_{rows}.parquet"
        pd.DataFrame({"text": np.resize(texts.to_numpy(), rows)}).to_parquet(source, index=False)
        command = [sys.executable, "-m", "helpers.predict", str(export_dir), str(source), "--model", "int8", "--out",
                   str(Path(folder) / f"scored_{rows}.parquet"), "--quiet", "--threads", str(threads)]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        speed = re.search(r"\(([\d.]+) reviews/s\)", stderr)
        if status or not speed:
            raise SystemExit(f"helpers.predict failed on {rows} rows:\n{stderr}")
        out[rows] = {"peak_memory_mb": usage.ru_maxrss / 1024, "reviews_per_s": float(speed.group(1))}
    out["memory_growth_mb"] = out[20000]["peak_memory_mb"] - out[1000]["peak_memory_mb"]
    out["throughput_ratio"] = out[20000]["reviews_per_s"] / out[1000]["reviews_per_s"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder whose distill stage has finished")
    parser.add_argument("--reviews", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--scale", metavar="EXPORT_DIR", help="also time helpers.predict on this export folder")
    parser.add_argument("--out", default=str(RESULTS / "export_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load_run(args.run_dir)
    with tempfile.TemporaryDirectory() as folder:
        rows, fusions, runners, tokenizer = copies_speed(run, args, folder)
        print(pd.DataFrame(rows).T.drop(columns="rounds").round(3).to_string())
        results = {"run": str(run.dir), "reviews": args.reviews, "batch_size": args.batch_size, "threads": args.threads,
                   "rounds": args.rounds, "cpu": _cpu_name(), "fusions": fusions, "copies": rows}
        if not args.no_accuracy:
            results["accuracy"] = paired_accuracy(run, runners, tokenizer)
            print(pd.DataFrame({(s, w): v for s, by in results["accuracy"].items() for w, v in by.items()
                                if w != "reviews"}).T.drop(columns="ci95").round(4).to_string())
        if args.scale:
            results["predict_scale"] = predict_at_scale(run, args.scale, folder, args.threads)
            print(results["predict_scale"])
    write_json(args.out, results)
    print(f"written to {args.out}")
    return results


def _cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


if __name__ == "__main__":
    main()
