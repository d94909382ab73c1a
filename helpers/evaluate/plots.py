"""The figures the notebooks show; each function returns a matplotlib Figure."""
import matplotlib.pyplot as plt
import numpy as np

from helpers.core.files import atomic_write
from helpers.core.sentiment import LABEL_NAMES
from helpers.evaluate import calibration


def _axes(figsize):
    # Made through pyplot so that a Jupyter kernel sets up its inline display of figures, then closed at once:
    # pyplot neither shows it by itself (a notebook shows each figure once, where it displays it) nor keeps it alive.
    # The tight layout is applied whenever the figure is drawn, so each function below only draws.
    fig = plt.figure(figsize=figsize, layout="tight")
    plt.close(fig)
    return fig, fig.add_subplot()


def label_balance(summary):
    fig, ax = _axes(figsize=(6, 3))
    summary[["negative", "positive"]].plot.bar(ax=ax, color=["#c0504d", "#4f81bd"], rot=0)
    ax.set(ylabel="reviews", title="Label balance per split")
    return fig


def length_histogram(lengths_by_split, unit, cutoff=None):
    """Histogram of review lengths per split; `cutoff` draws the truncation line."""
    fig, ax = _axes(figsize=(7, 3.5))
    top = max(np.percentile(v, 99) for v in lengths_by_split.values())
    bins = np.linspace(0, top, 50)
    for name, values in lengths_by_split.items():
        ax.hist(np.clip(values, 0, top), bins=bins, alpha=0.5, label=name, density=True)
    if cutoff:
        ax.axvline(cutoff, color="black", linestyle="--", label=f"max_length = {cutoff}")
    ax.set(xlabel=f"review length ({unit}, clipped at the 99th percentile)", ylabel="density")
    ax.legend()
    return fig


def loss_curve(history, title):
    steps = history["steps"]
    fig, ax = _axes(figsize=(7, 3.5))
    x = np.arange(1, len(steps) + 1)
    loss = np.array([s["loss"] for s in steps])
    ax.plot(x, loss, alpha=0.3, label="training loss (per step)")
    window = max(1, len(loss) // 20)
    ax.plot(x[window - 1:], np.convolve(loss, np.ones(window) / window, mode="valid"), label=f"moving average ({window})")
    per_epoch = len(steps) / max(1, len(history["epochs"]))
    for i, epoch in enumerate(history["epochs"], start=1):
        ax.scatter(i * per_epoch, epoch["loss"], color="black", zorder=3, label="validation loss" if i == 1 else None)
    ax.set(xlabel="optimizer step", ylabel="loss", title=title)
    ax.legend()
    return fig


def confusion_figure(matrix):
    fig, ax = _axes(figsize=(4, 3.5))
    ax.imshow(matrix.values, cmap="Blues")
    names = [LABEL_NAMES[0], LABEL_NAMES[1]]
    ax.set(xticks=[0, 1], xticklabels=names, yticks=[0, 1], yticklabels=names, xlabel="predicted", ylabel="true",
           title="Confusion matrix (test)")
    peak = matrix.values.max()
    for (i, j), count in np.ndenumerate(matrix.values):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    return fig


def reliability(table_before, table_after):
    """Reliability diagram before and after calibration: bin accuracy against mean confidence, marker area = reviews."""
    fig, ax = _axes(figsize=(5, 4.5))
    ax.plot([0.5, 1], [0.5, 1], color="black", linestyle="--", linewidth=1, label="perfectly calibrated")
    for table, name, color in ((table_before, "before", "#c0504d"), (table_after, "after", "#4f81bd")):
        sizes = 400 * table["count"] / table["count"].sum()
        ax.plot(table["mean_confidence"], table["accuracy"], color=color, alpha=0.6,
                label=f"{name} (ECE {calibration.table_calibration_error(table):.3f})")
        ax.scatter(table["mean_confidence"], table["accuracy"], s=sizes, color=color, alpha=0.6)
    ax.set(xlim=(0.5, 1.0), ylim=(0.0, 1.02), xlabel="confidence in the predicted class (bin mean)",
           ylabel="accuracy in the bin", title="Reliability diagram")
    ax.legend(loc="upper left")
    return fig


def save(fig, path):
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=120)


def learning_curve(table, name):
    """Test accuracy (left axis) and training minutes (right axis) against the swept parameter."""
    fig, ax = _axes(figsize=(7, 4))
    try:
        x = [float(v) for v in table.index]
    except ValueError:  # not a number (a model name, say): evenly spaced
        x = list(range(len(table)))
    for column, label, color in (("teacher_accuracy", "teacher", "#4f81bd"), ("student_accuracy", "student", "#9bbb59")):
        if table[column].notna().any():
            ax.plot(x, table[column], marker="o", color=color, label=f"{label} test accuracy")
    if min(x) > 0 and max(x) / min(x) >= 4:  # sizes that double read best on a log axis
        ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(v) for v in table.index])
    ax.set(xlabel=name, ylabel="test accuracy", title=f"What more {name} buys")
    minutes = ax.twinx()
    minutes.plot(x, table["train_seconds"] / 60, marker="s", linestyle="--", color="grey", label="train stage (min)")
    minutes.set_ylabel("train stage, minutes")
    lines = ax.get_legend_handles_labels()[0] + minutes.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right")
    return fig
