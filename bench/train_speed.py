"""Training throughput: our loop against the seed report's recipe and the Hugging Face Trainer.

    python bench/train_speed.py                # 512 real reviews, MiniLM-L6, 256 tokens, batch 16 (minutes)
    python bench/train_speed.py --size tiny    # seconds: tiny random BERT on 32 reviews (what the tests run)
    python bench/train_speed.py --seeds 3 --n-train 1744 --lr 5e-5 --variants ours,naive   # other settings
    python bench/train_speed.py --overhead     # the loops' fixed costs: ours against the Trainer (bench/loop_overhead.py)

The three variants train one epoch on the same reviews, one after the other in this process,
each from the same freshly loaded model and seed:

- ours:    helpers.train.trainer.train, exactly as the train stage runs it (length-grouped batches
           padded to a multiple of 8, attention dropout off, the precision `auto` picks,
           validation and an epoch-end checkpoint included in its time);
- naive:   the seed report's recipe: every review padded to max_length up front, a plain
           loop with AdamW in fp32;
- trainer: transformers' Trainer with DataCollatorWithPadding (random batches padded to
           their longest review), bf16 on a GPU as ours, neither validating nor saving, logging
           the loss every 10 steps as ours does (bench/loop_timing.py).

Each trained model is then scored on the same held-out reviews. FLOPs are counted from the
tokens each forward pass really received: per review of n real tokens, 2 FLOPs per weight of
every matrix multiply in the encoder layers per token, plus 4 * n^2 * hidden per layer for
attention (QK^T and AV), times 3 for forward plus backward. Padding does not count, so the
model FLOPs utilisation (MFU) is useful work per second over the peak matrix-multiply rate of
this very machine in the loop's precision, measured here too.

Results go to bench/results/train_speed.json (git-ignored) and print as a table.
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from bench import loop_timing  # noqa: E402
from bench.loop_timing import RESULTS, loop_precision, prepare  # noqa: E402
from helpers.core import models
from helpers.core.accelerators import make_accelerator  # noqa: E402
from helpers.core.files import write_json  # noqa: E402
from helpers.core.precision import matmul_seconds  # noqa: E402
from helpers.runs.config import PRECISIONS, resolve_params  # noqa: E402
from helpers.train import prediction, trainer

SIZES = {
    "full": dict(model="minilm-l6", n_train=512, n_val=256, max_length=256, batch_size=16, lr=1e-4),
    "tiny": dict(model="tiny-random-bert", n_train=32, n_val=16, max_length=64, batch_size=8, lr=1e-3),
}


def variant_names(text):
    """The loops named in `--variants`, in the benchmark's order; ours always, unknown names refused."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    return [name for name in VARIANTS if name in names | {"ours"}]


def speed_ratio(variants, name):
    """Ours' reviews/s over variant `name`'s, or None when that variant was not trained."""
    if name not in variants:
        return None
    return variants["ours"]["reviews_per_s"] / variants[name]["reviews_per_s"]


def summarize(seeded_runs, peaks):
    """One variant's figures: each the mean over its seeded runs (time and FLOPs summed, so rates are
    totals over totals), with every run's validation accuracy kept to show the spread."""
    total = {key: sum(run[key] for run in seeded_runs) for key in ("reviews", "seconds", "flops", "real", "padded")}
    precision = seeded_runs[0]["precision"]
    model_flops_per_s = total["flops"] / total["seconds"]
    accuracies = [run["val_accuracy"] for run in seeded_runs]
    return {"reviews_per_s": total["reviews"] / total["seconds"], "seconds": total["seconds"] / len(seeded_runs),
            "precision": precision, "padding_share": 1 - total["real"] / total["padded"],
            "model_flops_per_s": model_flops_per_s, "mfu": model_flops_per_s / peaks[precision],
            "peak_memory_mb": max(run["peak_memory_mb"] for run in seeded_runs),
            "val_accuracy": float(np.mean(accuracies)), "val_accuracy_min": min(accuracies),
            "val_accuracy_max": max(accuracies), "val_accuracy_runs": accuracies}


def measure(run, params, tokenized, tokenizer, device, attention_dropout, texts):
    """Train one variant from a fresh model; its time, tokens, FLOPs, memory and validation accuracy."""
    model = models.load_teacher(params.model, tokenizer, params.seed, attention_dropout)
    counter = TokenCounter(model)
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        precision = run(model, params, tokenized, tokenizer, texts)
        seconds = time.perf_counter() - started
    counter.remove()
    accuracy = validation_accuracy(model, params, tokenized, tokenizer)
    return {"reviews": len(tokenized["train"]), "seconds": seconds, "precision": precision, "real": counter.real,
            "padded": counter.padded, "flops": counter.flops, "peak_memory_mb": memory.peak_mb,
            "val_accuracy": accuracy}


def run_ours(model, params, tokenized, tokenizer, texts):
    settings = trainer.TrainSettings.from_params(params)
    small_val = tokenized["val"].select(range(8))  # the loop validates each epoch; scoring happens outside
    with tempfile.TemporaryDirectory() as out_dir:
        trainer.train(model, {"train": tokenized["train"], "val": small_val}, tokenizer, settings, out_dir)
    return loop_precision(params)


def run_naive(model, params, tokenized, tokenizer, texts):
    encoded = tokenizer(texts, truncation=True, max_length=params.max_length, padding="max_length", return_tensors="pt")
    labels = torch.tensor(tokenized["train"]["labels"])
    dataset = torch.utils.data.TensorDataset(encoded["input_ids"], encoded["attention_mask"], labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=params.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(params.seed))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr)
    for input_ids, attention_mask, batch_labels in loader:
        out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), labels=batch_labels.to(device))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return "fp32"


def run_trainer(model, params, tokenized, tokenizer, texts):
    with tempfile.TemporaryDirectory() as out_dir:
        precision, _ = loop_timing.train_trainer(model, params, tokenized, tokenizer, out_dir, epoch_work="off")
    return precision


@dataclasses.dataclass(frozen=True)
class Variant:
    train: object  # function(model, params, tokenized, tokenizer, texts) -> the precision it trained in
    project_attention_dropout: bool  # ours trains with the project's attention_dropout; the others as the model comes


VARIANTS = {"ours": Variant(run_ours, True), "naive": Variant(run_naive, False), "trainer": Variant(run_trainer, False)}
BASELINES = [name for name in VARIANTS if name != "ours"]  # what ours' speed is divided by


class TokenCounter:
    """Counts, over every training forward pass, the real and padded tokens and the model FLOPs they cost.

    Each batch's review lengths stay where the batch is (on a GPU, reading them would make the CPU
    wait for the GPU at every step, which the loops avoid); they are read once, at the end. The hook
    is kept out of torch.compile's graph."""

    def __init__(self, model):
        config = model.config
        self.layers, self.hidden = config.num_hidden_layers, config.hidden_size
        self.matmul_weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "encoder" in n)
        self.padded = 0
        self._lengths = []
        self.handle = model.register_forward_pre_hook(torch.compiler.disable(self.hook), with_kwargs=True)

    def hook(self, module, args, kwargs):
        if module.training:
            mask = kwargs["attention_mask"]
            self._lengths.append(mask.sum(dim=1))
            self.padded += mask.numel()

    def _lengths_after(self, skipped):
        kept = self._lengths[skipped:]
        return torch.cat([lengths.cpu() for lengths in kept]).double() if kept else torch.zeros(0, dtype=torch.double)

    @property
    def real(self):
        return int(self._lengths_after(0).sum())

    @property
    def flops(self):
        return self.flops_after(0)

    def flops_after(self, skipped):
        """Model FLOPs (forward and backward) of the training forward passes after the first `skipped`."""
        lengths = self._lengths_after(skipped)
        forward = 2 * self.matmul_weights * lengths.sum() + 4 * self.layers * self.hidden * (lengths**2).sum()
        return 3 * float(forward)

    def remove(self):
        self.handle.remove()


class PeakMemory:
    """Peak memory while the block runs: CUDA's own counter on a GPU, sampled resident memory on the CPU."""

    def __init__(self, device):
        self.device, self.peak_mb, self._stop = device, 0.0, threading.Event()

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                self.peak_mb = max(self.peak_mb, int(statm.read().split()[1]) * page / 1e6)
            self._stop.wait(0.05)

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated() / 1e6
        else:
            self._stop.set()
            self._thread.join()


def validation_accuracy(model, params, tokenized, tokenizer):
    settings = trainer.TrainSettings.from_params(params)
    logits = prediction.predict_sets(model, {"val": tokenized["val"]}, tokenizer, settings.eval_batch_size,
                                     make_accelerator(settings))["val"]
    return float((logits.argmax(-1) == np.asarray(tokenized["val"]["labels"])).mean())


def warm_up(params, tokenizer, dtypes):
    model = models.load_teacher(params.model, tokenizer, params.seed).cuda()
    ids = torch.randint(1000, 2000, (params.batch_size, params.max_length), device="cuda")
    for dtype in dtypes:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            model(input_ids=ids, labels=torch.zeros(len(ids), dtype=torch.long, device="cuda")).loss.backward()
    del model
    torch.cuda.synchronize()


def matmul_peak(dtype, device):
    """FLOP/s of the best of 5 n x n matrix products in `dtype`: the machine's practical peak."""
    n = 8192 if device == "cuda" else 2048
    return 2 * n**3 / matmul_seconds(dtype, (n, n, n), device)


def device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu, {torch.get_num_threads()} threads"


def report(results):
    table = pd.DataFrame(results["variants"]).T.drop(columns="val_accuracy_runs")
    table["vs ours"] = results["variants"]["ours"]["reviews_per_s"] / table["reviews_per_s"]
    table["model TFLOP/s"] = table.pop("model_flops_per_s") / 1e12
    ratios = [f"ours vs {name} {ratio:.2f}x" for name in BASELINES
              if (ratio := results["ours_vs_" + name]) is not None]
    per_seed = []
    for name, figures in results["variants"].items():
        accuracies = ", ".join(format(accuracy, ".3f") for accuracy in figures["val_accuracy_runs"])
        per_seed.append(f"{name} {accuracies}")
    heading = (f"{results['reviews']} reviews, max_length {results['max_length']}, batch {results['batch_size']}, "
               f"lr {results['lr']:g}, {results['device']}, {results['seeds']} seed(s)")
    closing = ratios + [f"MFU {results['mfu']:.1%}", f"padding share {results['padding_share']:.1%}"]
    return "\n".join([heading, table.round(3).to_string(), "validation accuracy per seed: " + "; ".join(per_seed),
                      ", ".join(closing)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--model", help="another teacher (a name or folder) than the size's")
    parser.add_argument("--n-train", type=int, help="another number of training reviews than the size's")
    parser.add_argument("--lr", type=float, help="another learning rate than the size's (every variant uses it)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated loops to train (ours is always among them: the ratios need it)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every variant this many times (seeds 42, 43, ...), to see how far accuracy "
                             "moves with the seed alone")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="the loops' precision (default auto: helpers/core/precision.py's decision table; "
                             "fp32 with --overhead)")
    parser.add_argument("--overhead", action="store_true",
                        help="time the loops' fixed costs instead: ours against the Trainer on the tiny model, per "
                             "step and per epoch, epoch-end work off then on (bench/loop_overhead.py); takes "
                             "--n-train, --precision, --repeats and --out")
    parser.add_argument("--repeats", type=int, default=3, help="--overhead: runs of each loop; medians are reported")
    parser.add_argument("--out", help="the results file (default bench/results/train_speed.json, or "
                                      "train_speed_overhead.json with --overhead)")
    args = parser.parse_args(argv)
    if args.overhead:
        from bench import loop_overhead

        return loop_overhead.main(args.n_train, args.precision or "fp32", args.repeats, args.out)
    args.out, args.precision = args.out or str(RESULTS / "train_speed.json"), args.precision or "auto"
    chosen_values = {"model": args.model, "n_train": args.n_train, "lr": args.lr, "precision": args.precision}
    size = {**SIZES[args.size], **{name: value for name, value in chosen_values.items() if value is not None}}
    chosen = variant_names(args.variants)
    params, texts, tokenized, tokenizer = prepare(size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loop_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[loop_precision(params)]
    dtypes = {"fp32": torch.float32, loop_precision(params): loop_dtype}
    if device == "cuda":  # CUDA's start-up (context, cuBLAS handles) is paid here, not by the first variant
        warm_up(params, tokenizer, dtypes.values())
    # the peak is measured before and after the variants and the better kept: on a shared machine one
    # measurement can land in a slow moment, which would flatter every MFU
    peak_samples = {name: [matmul_peak(dtype, device)] for name, dtype in dtypes.items()}
    runs = {name: [] for name in chosen}
    for seed in range(params.seed, params.seed + args.seeds):
        seeded = dataclasses.replace(params, seed=seed)
        # ours trains with the project's attention_dropout (0: fused attention); the baselines as the model comes
        for name in chosen:
            variant = VARIANTS[name]
            print(f"training: {name}, seed {seed} ...", flush=True)
            attention_dropout = params.attention_dropout if variant.project_attention_dropout else None
            runs[name].append(measure(variant.train, seeded, tokenized, tokenizer, device, attention_dropout, texts))
    for name, dtype in dtypes.items():
        peak_samples[name].append(matmul_peak(dtype, device))
    peaks = {name: max(samples) for name, samples in peak_samples.items()}
    variants = {name: summarize(seeded_runs, peaks) for name, seeded_runs in runs.items()}
    results = {
        "size": args.size, "model": size["model"], "device": device_name(device), "reviews": size["n_train"],
        "max_length": size["max_length"], "batch_size": size["batch_size"], "seeds": args.seeds,
        "matmul_peak_flops_per_s": peaks, "matmul_peak_samples": peak_samples,
        "lr": size["lr"], **{f"ours_vs_{name}": speed_ratio(variants, name) for name in BASELINES},
        "mfu": variants["ours"]["mfu"], "padding_share": variants["ours"]["padding_share"], "variants": variants,
    }
    write_json(args.out, results)
    print(report(results))
    print(f"written to {args.out}")
    return results


if __name__ == "__main__":
    main()
