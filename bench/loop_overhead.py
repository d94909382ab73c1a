"""`python bench/train_speed.py --overhead`: the fixed costs of our loop against the Trainer's, on any CPU.

The tiny random BERT (4 layers, 32 wide) keeps a step's compute negligible, so what is timed is
what each loop does around it: batching, the optimizer step, logging, validation and saving.
Each loop trains 3 epochs on 512 committed reviews (validating on 128 more) from the same model,
seed, settings and precision (fp32 unless --precision says otherwise), once with epoch-end work
off and once on (bench/loop_timing.py defines both and how setup, per step, per epoch end and per
epoch are timed). Each setting runs --repeats times (3 by default), the loops interleaved so that
a slow moment of a shared machine hits all of them alike; the table shows medians. torch runs on
one thread: the compute is negligible anyway, and on a busy CPU a second thread's waits (OpenMP
parallel regions stalling on a descheduled thread) would swamp what is measured. Ours groups
reviews by length, so its like-for-like rival is the Trainer with length grouping; the Trainer
with random batches is shown too. Ratios are ours' seconds over the Trainer's: below 1, ours is faster.

Results go to bench/results/train_speed_overhead.json (git-ignored) and print as a table.
"""
import functools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench import loop_timing
from bench.loop_timing import RESULTS, prepare
from helpers.core import models
from helpers.core.files import write_json

SIZE = dict(model="tiny-random-bert", n_train=512, n_val=128, max_length=128, batch_size=8, lr=1e-3, epochs=3)
LOOPS = {  # name -> how it trains (model, params, tokenized, tokenizer, out_dir, epoch_work)
    "ours": loop_timing.train_ours,
    "trainer grouped": lambda *args: loop_timing.train_trainer(*args, group_by_length=True),
    "trainer": loop_timing.train_trainer,
}
RIVALS = ("trainer grouped", "trainer")  # what ours is divided by; the first is the like-for-like one
FIGURES = ("setup_s", "step_s", "epoch_end_s", "epoch_s")
TARGETS = ("step_s", "epoch_end_s")  # ours' per-step and per-epoch overhead no more than the Trainer's


def time_each_loop(params, tokenized, tokenizer, epoch_work, repeats):
    """{loop: [step_figures of each repeat]} for one epoch-end setting."""
    runs = {name: [] for name in LOOPS}
    for repeat in range(repeats):
        for name, train in LOOPS.items():
            print(f"overhead: {name}, epoch-end work {epoch_work}, repeat {repeat + 1} of {repeats} ...", flush=True)
            # the same model for every loop (the project's attention dropout): only the loop differs
            model = models.load_teacher(params.model, tokenizer, params.seed, params.attention_dropout)
            with tempfile.TemporaryDirectory() as out_dir:
                run = loop_timing.time_loop(
                    functools.partial(train, model, params, tokenized, tokenizer, out_dir, epoch_work), model)
            runs[name].append(loop_timing.step_figures(run, params.epochs))
    return runs


def medians(runs):
    return {name: {figure: float(np.median([run[figure] for run in each])) for figure in FIGURES}
            for name, each in runs.items()}


def ratios(median):
    """Ours' seconds over each rival's, per figure (None where the rival's is not above zero), and the
    epoch-end difference in seconds: with epoch-end work off both are near zero, where a ratio says little."""
    return {rival: {**{figure: median["ours"][figure] / median[rival][figure] if median[rival][figure] > 0 else None
                       for figure in FIGURES},
                    "epoch_end_difference_s": median["ours"]["epoch_end_s"] - median[rival]["epoch_end_s"]}
            for rival in RIVALS}


def report(results):
    rows = []
    for work, by_loop in results["medians"].items():
        for name, figures in by_loop.items():
            rows.append({"epoch-end work": work, "loop": name, "setup s": figures["setup_s"],
                         "per step ms": 1e3 * figures["step_s"], "per epoch end ms": 1e3 * figures["epoch_end_s"],
                         "per epoch s": figures["epoch_s"]})
    size = results["size"]
    heading = (f"loop overhead: {size['model']}, {size['n_train']} training reviews (validation {size['n_val']}), "
               f"max_length {size['max_length']}, batch {size['batch_size']}, {size['epochs']} epochs of "
               f"{results['steps_per_epoch']} steps, {results['precision']}, {results['device']}; "
               f"median of {results['repeats']} repeats")
    lines = [heading,
             pd.DataFrame(rows).set_index(["epoch-end work", "loop"]).round(3).to_string()]
    for work, by_rival in results["ratios"].items():
        for rival, figures in by_rival.items():
            shown = ", ".join(f"{name} {figures[figure]:.2f}" for name, figure in
                              (("setup", "setup_s"), ("per step", "step_s"), ("per epoch", "epoch_s")))
            lines.append(f"ours / {rival}, epoch-end work {work}: {shown}; "
                         f"per epoch end {1e3 * figures['epoch_end_difference_s']:+.1f} ms")
    met = ", ".join(f"{work}: {'yes' if ok else 'NO'}" for work, ok in results["target_met"].items())
    lines.append(f"target (ours' per step and per epoch end no slower than the Trainer grouped): {met}")
    return "\n".join(lines)


def main(n_train=None, precision="fp32", repeats=3, out=None):
    if repeats < 1:
        raise SystemExit("--repeats: at least 1 (the medians need a run)")
    n_train = n_train or SIZE["n_train"]
    n_val = max(8, SIZE["n_val"] * n_train // SIZE["n_train"])  # validation keeps its share of the reviews
    size = {**SIZE, "n_train": n_train, "n_val": n_val, "precision": precision}
    out = Path(out or RESULTS / "train_speed_overhead.json")
    params, _, tokenized, tokenizer = prepare(size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {work: time_each_loop(params, tokenized, tokenizer, work, repeats) for work in loop_timing.EPOCH_WORK}
    finally:
        torch.set_num_threads(threads)
    median = {work: medians(by_loop) for work, by_loop in runs.items()}
    by_work = {work: ratios(figures) for work, figures in median.items()}
    rival = RIVALS[0]  # the like-for-like one
    results = {
        "size": size, "precision": loop_timing.loop_precision(params),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{loop_timing.cpu_name()}, 1 thread",
        "repeats": repeats, "steps_per_epoch": -(-len(tokenized["train"]) // params.batch_size),
        "medians": median, "ratios": by_work, "runs": runs,
        "target_met": {work: all(figures["ours"][figure] <= figures[rival][figure] for figure in TARGETS)
                       for work, figures in median.items()},
    }
    write_json(out, results)
    print(report(results))
    print(f"written to {out}")
    return results
