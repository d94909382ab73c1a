"""The sections of report.html, one function of the run folder each, built only from the files the stages left
(a missing one shows "not run yet"), and the HTML pieces they are built of. Text from the data is escaped.
"""
import base64
import html
import json

import pandas as pd

from helpers.core.files import read_json
from helpers.evaluate.paired import paired_sentence
from helpers.runs import layout

N_ERRORS_SHOWN = 5  # confidently wrong reviews quoted in the report
ERROR_TEXT_CHARS = 300  # each quoted review is cut to this many characters


def not_run(path):
    return f'<p class="missing">Not run yet: {html.escape(path)} does not exist.</p>\n'


def read_run_json(run_dir, relative):
    """A JSON file of the run, or None when that stage has not written it (yet)."""
    path = run_dir / relative
    return read_json(path) if path.exists() else None


def html_table(frame, css_class=""):
    """A DataFrame as an HTML table, its first column as row labels; pandas escapes every cell and header."""
    return frame.to_html(index=False, border=0, escape=True, na_rep="", float_format=number, classes=css_class) + "\n"


def number(value):
    """Four significant digits, thousands whole with separators: 0.8438, 12.35, 25,000."""
    if value != value:  # NaN
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def figure(run_dir, relative, caption):
    """A PNG of the run embedded as a data URI, or a note when the file is missing."""
    path = run_dir / relative
    if not path.exists():
        return f'<p class="missing">figure missing: {html.escape(relative)}</p>\n'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(relative, quote=True)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)} ({alt})</figcaption></figure>\n")


def key_values(mapping, key="name"):
    """A flat dict as a two-column table (values shown as text, so lists and None read plainly)."""
    rows = [(k, v if isinstance(v, str) else number(v) if isinstance(v, float) else json.dumps(v))
            for k, v in mapping.items()]
    return html_table(pd.DataFrame(rows, columns=[key, "value"]), "kv")


def from_file(relative):
    """A section built from the run's JSON file `relative` (`build(run_dir, its content)`), "not run yet" without it."""
    def decorate(build):
        def section(run_dir):
            stored = read_run_json(run_dir, relative)
            return not_run(relative) if stored is None else build(run_dir, stored)
        return section
    return decorate


@from_file(layout.PARAMS_FILE)
def parameters_section(run_dir, stored):
    return f"<p>Profile <b>{html.escape(str(stored['profile']))}</b>.</p>\n" + key_values(stored["params"], "parameter")


@from_file(layout.ENVIRONMENT_FILE)
def environment_section(run_dir, env):
    return key_values({k: v for k, v in env.items() if k != "packages"}) + key_values(env.get("packages", {}), "package")


@from_file(layout.SPLITS_SUMMARY)
def data_section(run_dir, summary):
    return (html_table(pd.DataFrame(summary)) + figure(run_dir, layout.FIGURES["label_balance"], "Label balance per split")
            + figure(run_dir, layout.FIGURES["review_words"], "Review length in words"))


@from_file(layout.LENGTH_STATS)
def tokens_section(run_dir, stats):
    return html_table(pd.DataFrame(stats)) + figure(run_dir, layout.FIGURES["token_lengths"], "Review length in tokens")


def _epochs(history):
    frame = pd.DataFrame(history["epochs"])
    return html_table(frame[["epoch"] + [c for c in frame if c != "epoch"]])


@from_file(layout.TEACHER_HISTORY)
def training_section(run_dir, history):
    precision = html.escape(str(history.get("precision", "?")))
    return (f"<p>Mixed precision: {precision}. One row per epoch, on the validation split.</p>\n"
            + _epochs(history) + figure(run_dir, layout.FIGURES["loss_curve"], "Teacher loss"))


@from_file(layout.TEACHER_METRICS)
def evaluation_section(run_dir, metrics):
    low, high = metrics.get("accuracy_ci95", [float("nan")] * 2)
    out = (f"<p>Teacher on the test split; accuracy's 95% interval (Wilson): {low:.4f} to {high:.4f}.</p>\n"
           + key_values({k: v for k, v in metrics.items() if k != "accuracy_ci95"}, "metric"))
    sets = read_run_json(run_dir, layout.TEST_SET_SCORES)
    if sets is not None:
        from helpers.evaluate.metrics import sets_table  # imports torch: only when there is something to show

        out += "<h3>Every test set: the TF-IDF baseline beside the teacher</h3>\n" + html_table(sets_table(sets).reset_index())
    out += _paired(read_run_json(run_dir, layout.PAIRED))
    calibration = read_run_json(run_dir, layout.TEACHER_CALIBRATION)
    if calibration is not None:
        out += _calibration(calibration, "Calibration") + figure(run_dir, layout.FIGURES["reliability"], "Reliability diagram (test)")
    return (out + figure(run_dir, layout.FIGURES["confusion_matrix"], "Confusion matrix (test)")
            + _confident_errors(run_dir / layout.CONFIDENT_ERRORS))


def _paired(paired_by_set):
    """Paired differences ({set: helpers.evaluate.paired.paired_comparisons}), one sentence each."""
    if not any((paired_by_set or {}).values()):
        return ""
    lines = "".join(f"<li>{html.escape(name)}: {html.escape(paired_sentence(pair, stats))}</li>\n"
                    for name, by_pair in paired_by_set.items() for pair, stats in by_pair.items())
    return ("<h3>Paired differences (same reviews)</h3>\n<p>Accuracy differences with a paired bootstrap interval and "
            "McNemar's exact test; \"within noise\" where the interval holds 0.</p>\n<ul>\n" + lines + "</ul>\n")


def _calibration(fitted, title):
    if fitted is None:
        return ""
    from helpers.evaluate.calibration import calibration_summary

    return f"<h3>{title}</h3>\n<p>{html.escape(calibration_summary(fitted))} Applied where the model predicts; its saved model stays raw.</p>\n"


def _confident_errors(path):
    """The first few confidently wrong test reviews; the text is data, so pandas escapes it."""
    if not path.exists():
        return ""
    errors = pd.read_csv(path, index_col=0).head(N_ERRORS_SHOWN)
    if "text" in errors:
        errors["text"] = errors["text"].astype(str).map(lambda t: t[:ERROR_TEXT_CHARS] + " …" * (len(t) > ERROR_TEXT_CHARS))
    return f"<h3>Most confident errors (first {len(errors)})</h3>\n" + html_table(errors, "errors")


@from_file(layout.COMPARISON)
def distillation_section(run_dir, comparison):
    from helpers.distill.model_comparison import comparison_table, extra_sets_table  # torch: only when needed

    out = ("<p>TF-IDF baseline, teacher, student and int8-quantised student; each column's name says which test "
           "reviews it rests on (the int8 student runs on the CPU, on a seeded sample). The <i>/ teacher</i> rows "
           "are each one's ratio to the teacher over the same reviews; the <i>a - b</i> rows their accuracy difference "
           "with its paired interval and McNemar p (below).</p>\n"
           + html_table(comparison_table(comparison).rename_axis("model").reset_index()))
    extra = extra_sets_table(comparison)
    if len(extra):
        out += "<h3>Extra test sets</h3>\n" + html_table(extra.reset_index())
    extras = {name: result.get("paired", {}) for name, result in comparison.get("extra_test_sets", {}).items()}
    out += _paired({"test": comparison.get("paired", {}), **extras})
    out += _calibration(read_run_json(run_dir, layout.STUDENT_CALIBRATION), "Student calibration")
    history = read_run_json(run_dir, layout.STUDENT_HISTORY)
    if history is not None:
        out += "<h3>Student epochs</h3>\n" + _epochs(history)
    return out + figure(run_dir, layout.FIGURES["student_loss_curve"], "Student loss")
