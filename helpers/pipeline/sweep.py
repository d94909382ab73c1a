"""One parameter, several values: the pipeline once per value, and what each value buys.

    python -m helpers.run quick --sweep n_train=250,500,1000,2000 --seeds 3 --stages data,tokenize,train,evaluate

Each value (with --seeds, each seed of it) gets a run folder under the sweep folder (`<sweep>/n_train-250/seed-42/`);
`sweep.csv` holds each value's test accuracy and stage times (over seeds, medians; `runs.csv` every run), and
`learning_curve.png` draws them: for n_train, what scaling up buys before paying for the full run.
"""
from pathlib import Path

import pandas as pd

from helpers.core.errors import ConfigError
from helpers.core.files import write_frame
from helpers.evaluate import plots
from helpers.pipeline.report_sections import read_run_json
from helpers.runs import layout
from helpers.runs.config import FIELDS
from helpers.runs.run_folder import read_timings

SWEEP_TABLE, SEED_TABLE, RUNS_TABLE, LEARNING_CURVE = "sweep.csv", "seeds.csv", "runs.csv", "learning_curve.png"
ACCURACIES = {"teacher_accuracy": layout.TEACHER_METRICS, "student_accuracy": layout.STUDENT_METRICS}
TIMINGS = {"train_seconds": layout.NOTEBOOKS["train"], "distill_seconds": layout.NOTEBOOKS["distill"]}
NAN = float("nan")


def parse_sweep(text):
    """'NAME=V1,V2,...' -> (NAME, [V1, V2, ...]), the values still raw strings (validated as any override)."""
    name, _, values = text.partition("=")
    name, values = name.strip(), [v.strip() for v in values.split(",") if v.strip()]
    if name not in FIELDS:
        raise ConfigError(f"--sweep {text!r}: {name!r} is not a parameter; known: {', '.join(FIELDS)}")
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(f"--sweep {text!r}: give two or more different values, e.g. --sweep n_train=250,500,1000")
    return name, values


def run_dirs(sweep_dir, name, values):
    """The run folder of each value, inside the sweep folder."""
    return {value: Path(sweep_dir) / f"{name}-{value}" for value in values}


def collect(name, dirs):
    """One row per value: test accuracy of teacher and student (where run) and stage seconds."""
    rows = []
    for value, run_dir in dirs.items():
        timings = read_timings(run_dir)
        rows.append({name: value, **{who: (read_run_json(Path(run_dir), path) or {"accuracy": NAN})["accuracy"]
                                     for who, path in ACCURACIES.items()},
                     **{column: timings.get(notebook, NAN) for column, notebook in TIMINGS.items()}})
    return pd.DataFrame(rows).set_index(name)


def write_results(sweep_dir, name, table):
    """sweep.csv and learning_curve.png in the sweep folder (and, over seeds, seeds.csv)."""
    write_frame(Path(sweep_dir) / SWEEP_TABLE, table)
    if name == "seed":
        write_frame(Path(sweep_dir) / SEED_TABLE, seed_summary(table))
    plots.save(plots.learning_curve(table, name), Path(sweep_dir) / LEARNING_CURVE)


def collect_grid(name, values, dirs):
    """One row per run of a sweep under several seeds (`dirs` value-major, as the runner plans them)."""
    per_value = len(dirs) // len(values)
    frames = [collect(name, {value: run_dir}).assign(seed=int(Path(run_dir).name.removeprefix("seed-")))
              for i, value in enumerate(values) for run_dir in dirs[i * per_value:(i + 1) * per_value]]
    return pd.concat(frames)


def write_grid_results(sweep_dir, name, runs):
    """runs.csv (every run), sweep.csv and learning_curve.png (per value, the median of each figure over its seeds,
    with the teacher's lowest and highest); returns the medians."""
    write_frame(Path(sweep_dir) / RUNS_TABLE, runs)
    grouped = runs.drop(columns="seed").groupby(level=0, sort=False)
    table = grouped.median()
    table.insert(1, "teacher_min", grouped["teacher_accuracy"].min())
    table.insert(2, "teacher_max", grouped["teacher_accuracy"].max())
    table.insert(0, "seeds", grouped.size())
    write_results(sweep_dir, name, table)  # never a sweep over seeds: --seeds makes the grid
    return table


def seed_summary(table):
    """Mean, standard deviation (n - 1), min and max of every column over the runs of a seed sweep."""
    return table.agg(["mean", "std", "min", "max"]).T
