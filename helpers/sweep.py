"""One parameter, several values: the pipeline once per value, and what each value buys.

    python -m helpers.run quick --sweep n_train=250,500,1000,2000 --stages data,tokenize,train,evaluate

Each value gets its own run folder under the sweep folder (`<sweep>/n_train-250/`, ...), a run
like any other (resumable, with its report). When all have finished, `sweep.csv` holds each
value's test accuracy and stage times and `learning_curve.png` draws them: for n_train, a
learning curve that shows what scaling up will buy before paying for the full run.
"""
from pathlib import Path

import pandas as pd

from helpers import plots
from helpers.config import FIELDS, ConfigError
from helpers.io import read_json, write_frame
from helpers.runs import read_timings

TIMINGS = {"train_seconds": "03_train.ipynb", "distill_seconds": "05_distill.ipynb"}


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
        row = {name: value}
        for who, path in (("teacher_accuracy", "eval/metrics.json"), ("student_accuracy", "distill/metrics.json")):
            file = Path(run_dir) / path
            row[who] = read_json(file)["accuracy"] if file.exists() else float("nan")
        timings = read_timings(run_dir)
        row.update({column: timings.get(notebook, float("nan")) for column, notebook in TIMINGS.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index(name)


def write_results(sweep_dir, name, table):
    """sweep.csv and learning_curve.png in the sweep folder (and, over seeds, seeds.csv); returns the figure."""
    write_frame(Path(sweep_dir) / "sweep.csv", table)
    if name == "seed":
        write_frame(Path(sweep_dir) / "seeds.csv", seed_summary(table))
    fig = plots.learning_curve(table, name)
    plots.save(fig, Path(sweep_dir) / "learning_curve.png")
    return fig


def seed_summary(table):
    """Mean, standard deviation (n - 1), min and max of every column over the runs of a seed sweep."""
    return table.agg(["mean", "std", "min", "max"]).T
