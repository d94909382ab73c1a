"""One self-contained `report.html` per run folder: what a person opens to see how a run went.

    python -m helpers.report runs/quick      # (re)build runs/quick/report.html

The batch runner writes it at the end of every run (also after a failed stage). It is built
only from the files the stages leave in the run folder, so it can be rebuilt for any run, old
or partial: a stage whose files are missing shows "not run yet" instead of failing. Every
figure is embedded as a base64 data URI and the CSS is inline, so the one file can be mailed,
attached to an issue or opened from Drive without its folder.

A small inline script checks, once the page has loaded, that every figure decoded; it
replaces a broken one with a visible note and records the counts on <body> as
`data-figures` and `data-figures-loaded`, for a reader and for the headless-browser test.
"""
import argparse
import base64
import html
import json
from pathlib import Path

import pandas as pd

from helpers import layout
from helpers.io import atomic_write, read_json

REPORT_NAME = "report.html"
N_ERRORS_SHOWN = 5  # confidently wrong reviews quoted in the report
ERROR_TEXT_CHARS = 300  # each quoted review is cut to this many characters

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 960px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { margin-bottom: 0.1em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; }
.subtitle, .note { color: #666; }
.missing { color: #a33; font-style: italic; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.25em 0.8em; text-align: right; vertical-align: top; }
th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
td:first-child { font-weight: 600; }
table.kv td, table.kv th { text-align: left; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; }
figcaption { color: #666; font-size: 13px; }
.errors td:last-child, .errors th:last-child { text-align: left; }
.errors td:last-child { font-size: 13px; max-width: 560px; }
.errors td:first-child { font-weight: normal; }
"""

# After `load` every <img> has either decoded or failed: count them, and make failures visible.
CHECK_FIGURES_JS = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images), loaded = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; return; }
    var note = document.createElement("p");
    note.className = "missing";
    note.textContent = "figure missing: " + (img.alt || "unnamed figure");
    img.replaceWith(note);
  });
  document.body.dataset.figures = images.length;
  document.body.dataset.figuresLoaded = loaded;
});
"""


def write_report(run_dir):
    """Build `report.html` from whatever the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    target = run_dir / REPORT_NAME
    with atomic_write(target) as tmp:
        tmp.write_text(render(run_dir), encoding="utf-8")
    return target


def render(run_dir):
    """The whole page as one string."""
    run_dir = Path(run_dir)
    sections = [(anchor, title, builder(run_dir)) for anchor, title, builder in SECTIONS]
    nav = " ".join(f'<a href="#{anchor}">{html.escape(title)}</a>' for anchor, title, _ in sections)
    body = "\n".join(f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{content}</section>'
                     for anchor, title, content in sections)
    name = html.escape(run_dir.resolve().name)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Run report: {name}</title>\n<style>{CSS}</style>\n<script>{CHECK_FIGURES_JS}</script>\n"
            f"</head><body>\n<h1>Run report: {name}</h1>\n"
            f'<p class="subtitle">{html.escape(str(run_dir.resolve()))}</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n')


# --- building blocks ---------------------------------------------------------------------

def _not_run(path):
    return f'<p class="missing">Not run yet: {html.escape(path)} does not exist.</p>\n'


def _read(run_dir, relative):
    """A JSON file of the run, or None when that stage has not written it (yet)."""
    path = run_dir / relative
    return read_json(path) if path.exists() else None


def _table(frame, css_class=""):
    """A DataFrame as an HTML table, its first column as row labels; pandas escapes every cell and header."""
    return frame.to_html(index=False, border=0, escape=True, na_rep="", float_format=_number, classes=css_class) + "\n"


def _number(value):
    """Four significant digits, thousands whole with separators: 0.8438, 12.35, 25,000."""
    if value != value:  # NaN
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _figure(run_dir, relative, caption):
    """A PNG of the run embedded as a data URI, or a note when the file is missing."""
    path = run_dir / relative
    if not path.exists():
        return f'<p class="missing">figure missing: {html.escape(relative)}</p>\n'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(relative, quote=True)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)} ({alt})</figcaption></figure>\n")


def _key_values(mapping, key="name"):
    """A flat dict as a two-column table (values shown as text, so lists and None read plainly)."""
    rows = [(k, v if isinstance(v, str) else _number(v) if isinstance(v, float) else json.dumps(v))
            for k, v in mapping.items()]
    return _table(pd.DataFrame(rows, columns=[key, "value"]), "kv")


# --- one function per section --------------------------------------------------------------

def summary_section(run_dir):
    """The outcome first: each stage's status, a failure's error, the accuracies, the total time."""
    timings = _read(run_dir, "timings.json") or {}
    failure = _read(run_dir, layout.FAILURE_FILE)
    rows = []
    for stage, notebook in layout.NOTEBOOKS.items():
        if failure and failure["notebook"] == notebook:
            status = f"failed: {failure['error'].splitlines()[0][:300]}"
        else:
            status = "done" if (run_dir / layout.DONE_MARKERS[stage]).exists() else "not run"
        rows.append((f"{notebook[:2]} {stage}", status, timings.get(notebook, float("nan"))))
    table = _table(pd.DataFrame(rows, columns=["stage", "status", "seconds"]))
    total = sum(timings.values())
    return _outcome(run_dir) + table + (f"<p>Total time: {total / 60:.1f} min ({total:,.0f} s).</p>\n" if timings else "")


def _outcome(run_dir):
    """One sentence per result the run has reached so far."""
    lines = []
    metrics = _read(run_dir, "eval/metrics.json")
    if metrics:
        low, high = metrics.get("accuracy_ci95", [float("nan")] * 2)
        lines.append(f"Teacher: test accuracy <b>{metrics['accuracy']:.4f}</b> (95% interval {low:.3f} to "
                     f"{high:.3f}), F1 {metrics['f1']:.4f} ({metrics['n']:,} test reviews).")
    sets = _read(run_dir, "eval/test_sets.json")
    if sets:
        lines += [f"On {name} ({by_model['teacher']['n']:,} reviews): teacher {by_model['teacher']['accuracy']:.4f}, "
                  f"TF-IDF baseline {by_model['baseline']['accuracy']:.4f}." for name, by_model in sets.items()]
    comparison = _read(run_dir, "distill/comparison.json")
    if comparison:
        models, reviews = comparison["models"], comparison["reviews"]
        teacher, student, int8 = (models[name] for name in ("teacher", "student", "student_int8"))
        share = student["test"]["accuracy"] / teacher["test"]["accuracy"]
        lines.append(f"Student: test accuracy <b>{student['test']['accuracy']:.4f}</b> ({share:.1%} of the teacher's), "
                     f"{student['params'] / teacher['params']:.0%} of its parameters, "
                     f"{student['reviews_per_s'] / teacher['reviews_per_s']:.1f}x its CPU speed.")
        lines.append(f"Student in int8: accuracy <b>{int8['cpu_sample']['accuracy']:.4f}</b> against the teacher's "
                     f"{teacher['cpu_sample']['accuracy']:.4f} on the same {reviews['cpu_sample']:,} test reviews, "
                     f"{int8['reviews_per_s'] / teacher['reviews_per_s']:.1f}x the teacher's CPU speed.")
    return "".join(f"<p>{line}</p>\n" for line in lines)



def parameters_section(run_dir):
    stored = _read(run_dir, "params.json")
    if stored is None:
        return _not_run("params.json")
    return f"<p>Profile <b>{html.escape(str(stored['profile']))}</b>.</p>\n" + _key_values(stored["params"], "parameter")


def environment_section(run_dir):
    env = _read(run_dir, "environment.json")
    if env is None:
        return _not_run("environment.json")
    top = {k: v for k, v in env.items() if k != "packages"}
    return _key_values(top) + _key_values(env.get("packages", {}), "package")


def data_section(run_dir):
    summary = _read(run_dir, "data/summary.json")
    if summary is None:
        return _not_run("data/summary.json")
    return (_table(pd.DataFrame(summary)) + _figure(run_dir, "data/label_balance.png", "Label balance per split")
            + _figure(run_dir, "data/review_words.png", "Review length in words"))


def tokens_section(run_dir):
    stats = _read(run_dir, "tokenized/length_stats.json")
    if stats is None:
        return _not_run("tokenized/length_stats.json")
    return _table(pd.DataFrame(stats)) + _figure(run_dir, "tokenized/token_lengths.png", "Review length in tokens")


def _epochs(history):
    frame = pd.DataFrame(history["epochs"])
    return _table(frame[["epoch"] + [c for c in frame if c != "epoch"]])


def training_section(run_dir):
    history = _read(run_dir, "train/history.json")
    if history is None:
        return _not_run("train/history.json")
    precision = html.escape(str(history.get("precision", "?")))
    return (f"<p>Mixed precision: {precision}. One row per epoch, on the validation split.</p>\n"
            + _epochs(history) + _figure(run_dir, "train/loss_curve.png", "Teacher loss"))


def evaluation_section(run_dir):
    metrics = _read(run_dir, "eval/metrics.json")
    if metrics is None:
        return _not_run("eval/metrics.json")
    low, high = metrics.get("accuracy_ci95", [float("nan")] * 2)
    shown = {k: v for k, v in metrics.items() if k != "accuracy_ci95"}
    out = (f"<p>Teacher on the test split; accuracy's 95% interval (Wilson): {low:.4f} to {high:.4f}.</p>\n"
           + _key_values(shown, "metric"))
    sets = _read(run_dir, "eval/test_sets.json")
    if sets is not None:
        out += "<h3>Every test set: the TF-IDF baseline beside the teacher</h3>\n" + _table(_sets_frame(sets))
    calibration = _read(run_dir, "eval/calibration.json")
    if calibration is not None:
        out += (f"<h3>Calibration</h3>\n<p>Temperature {calibration['temperature']:.3f}, fitted on the "
                f"{calibration['val_reviews']:,} validation reviews and folded into the saved teacher; expected "
                f"calibration error on the test split ({calibration['bins']} equal-width bins): "
                f"{calibration['ece_uncalibrated']:.4f} before, {calibration['ece']:.4f} after.</p>\n"
                + _figure(run_dir, "eval/reliability.png", "Reliability diagram (test)"))
    return (out + _figure(run_dir, "eval/confusion_matrix.png", "Confusion matrix (test)")
            + _confident_errors(run_dir / "eval" / "confident_errors.csv"))


def _sets_frame(sets):
    return pd.DataFrame([{"test set": name, "model": model, "reviews": m["n"], "accuracy": m["accuracy"],
                          "95% low": m["accuracy_ci95"][0], "95% high": m["accuracy_ci95"][1], "f1": m["f1"]}
                         for name, by_model in sets.items() for model, m in by_model.items()])


def _confident_errors(path):
    """The first few confidently wrong test reviews; the text is data, so pandas escapes it."""
    if not path.exists():
        return ""
    errors = pd.read_csv(path, index_col=0).head(N_ERRORS_SHOWN)
    if "text" in errors:
        errors["text"] = errors["text"].astype(str).map(lambda t: t if len(t) <= ERROR_TEXT_CHARS else t[:ERROR_TEXT_CHARS] + " …")
    return f"<h3>Most confident errors (first {len(errors)})</h3>\n" + _table(errors, "errors")


def distillation_section(run_dir):
    comparison = _read(run_dir, "distill/comparison.json")
    if comparison is None:
        return _not_run("distill/comparison.json")
    from helpers.distill import comparison_table, extra_sets_table  # import torch: only when there is something to show

    out = ("<p>TF-IDF baseline, teacher, student and int8-quantised student; each column's name says which test "
           "reviews it rests on (the int8 student runs on the CPU, on a seeded sample). The <i>/ teacher</i> rows "
           "are each one's ratio to the teacher over the same reviews.</p>\n"
           + _table(comparison_table(comparison).rename_axis("model").reset_index()))
    extra = extra_sets_table(comparison)
    if len(extra):
        out += "<h3>Extra test sets</h3>\n" + _table(extra.reset_index())
    history = _read(run_dir, "distill/history.json")
    if history is not None:
        out += "<h3>Student epochs</h3>\n" + _epochs(history)
    return out + _figure(run_dir, "distill/student_loss_curve.png", "Student loss")


SECTIONS = (  # anchor, heading, builder: the page's order
    ("summary", "Summary", summary_section),
    ("parameters", "Parameters", parameters_section),
    ("environment", "Environment", environment_section),
    ("data", "Data", data_section),
    ("tokens", "Token lengths", tokens_section),
    ("training", "Training", training_section),
    ("evaluation", "Test metrics", evaluation_section),
    ("distillation", "Distillation", distillation_section),
)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.report", description="(Re)build report.html for a run folder.")
    parser.add_argument("run_dir", help="a run folder, e.g. runs/quick")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        parser.error(f"{run_dir} is not a folder")
    print(write_report(run_dir))


if __name__ == "__main__":
    main()
