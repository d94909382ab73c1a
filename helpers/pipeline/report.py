"""One self-contained `report.html` per run folder, built only from the files the stages left (a missing stage shows
"not run yet"); figures as data URIs, report.css and report.js inline, so the one file can be mailed. This module
holds the page and its summary (each stage's seconds beside its estimate); the sections: report_sections.

    python -m helpers.report runs/quick      # (re)build runs/quick/report.html
"""
import argparse
import html
from pathlib import Path

import pandas as pd

from helpers.core.files import atomic_write
from helpers.pipeline.report_sections import (data_section, distillation_section, environment_section,
                                              evaluation_section, html_table, parameters_section, read_run_json,
                                              tokens_section, training_section)
from helpers.runs import layout

CPU_PART = "distill_cpu"  # estimates.json's key for 05's CPU part (helpers.pipeline.estimates)
NAN = float("nan")

PAGE_STYLE, CHECK_FIGURES_JS = ((Path(__file__).parent / name).read_text(encoding="utf-8")
                                for name in ("report.css", "report.js"))  # package data, inlined in every page


def write_report(run_dir):
    """Build `report.html` from whatever the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    target = run_dir / layout.REPORT_FILE
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
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<meta name="viewport" '
            f'content="width=device-width, initial-scale=1">\n<title>Run report: {name}</title>\n<style>\n{PAGE_STYLE}'
            f"</style>\n<script>\n{CHECK_FIGURES_JS}</script>\n</head><body>\n<h1>Run report: {name}</h1>\n"
            f'<p class="subtitle">{html.escape(str(run_dir.resolve()))}</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n')


def summary_section(run_dir):
    """The outcome first: each stage's status, a failure's error, its time beside the time estimated before it
    ran, the accuracies, the total time."""
    timings = read_run_json(run_dir, layout.TIMINGS_FILE) or {}
    estimates = read_run_json(run_dir, layout.ESTIMATES_FILE) or {}
    failure = read_run_json(run_dir, layout.FAILURE_FILE)
    rows = []
    for stage, notebook in layout.NOTEBOOKS.items():
        status = "done" if (run_dir / layout.DONE_MARKERS[stage]).exists() else "not run"
        if failure and failure["notebook"] == notebook:
            status = f"failed: {failure['error'].splitlines()[0][:300]}"
        rows.append((f"{notebook[:2]} {stage}", status, timings.get(notebook, NAN), estimates.get(stage, {}).get("seconds", NAN)))
    if CPU_PART in estimates:  # measured only where the stage records it (helpers.pipeline.estimates.measured)
        part = estimates[CPU_PART]
        rows.append(("05 distill: its CPU part", "part of 05", part.get("measured_seconds", NAN), part.get("seconds", NAN)))
    frame = pd.DataFrame(rows, columns=["stage", "status", "seconds", "estimated seconds"])
    if estimates:
        frame["seconds / estimated"] = frame["seconds"] / frame["estimated seconds"]
    else:
        frame = frame.drop(columns="estimated seconds")
    total = sum(timings.values())
    return (_outcome(run_dir) + html_table(frame) + _estimates_note(estimates)
            + (f"<p>Total time: {total / 60:.1f} min ({total:,.0f} s).</p>\n" if timings else ""))


def _estimates_note(estimates):
    """How each estimate was made: where, at what measured rate, on what work, its largest parts."""
    if not estimates:
        return ""
    rows = [{"stage": stage, "device": entry.get("device", ""), "precision": entry.get("precision", ""),
             "measured GFLOP/s": entry.get("measured_gflops", NAN), "work": entry.get("work", ""),
             "largest parts (s)": ", ".join(f"{name} {seconds:,.0f}" for name, seconds in
                                           sorted(entry.get("parts", {}).items(), key=lambda item: -item[1])[:3])}
            for stage, entry in estimates.items()]
    return ("<details><summary>How each estimate was made (estimates.json): the work, over the rate of an encoder "
            "layer timed on the device just before the stage (helpers.pipeline.estimates)</summary>\n"
            + html_table(pd.DataFrame(rows), "kv") + "</details>\n")


def _outcome(run_dir):
    """One sentence per result the run has reached so far."""
    lines = []
    metrics = read_run_json(run_dir, layout.TEACHER_METRICS)
    if metrics:
        low, high = metrics.get("accuracy_ci95", [float("nan")] * 2)
        lines.append(f"Teacher: test accuracy <b>{metrics['accuracy']:.4f}</b> (95% interval {low:.3f} to "
                     f"{high:.3f}), F1 {metrics['f1']:.4f} ({metrics['n']:,} test reviews).")
    sets, paired = read_run_json(run_dir, layout.TEST_SET_SCORES), read_run_json(run_dir, layout.PAIRED) or {}
    if sets:
        lines += [f"On {name} ({by_model['teacher']['n']:,} reviews): teacher {by_model['teacher']['accuracy']:.4f}, "
                  f"TF-IDF baseline {by_model['baseline']['accuracy']:.4f}{_difference(paired.get(name, {}), 'teacher - baseline')}."
                  for name, by_model in sets.items()]
    comparison = read_run_json(run_dir, layout.COMPARISON)
    if comparison:
        models, reviews, pairs = comparison["models"], comparison["reviews"], comparison.get("paired", {})
        teacher, student, int8 = (models[name] for name in ("teacher", "student", "student_int8"))
        share = student["test"]["accuracy"] / teacher["test"]["accuracy"]
        lines.append(f"Student: test accuracy <b>{student['test']['accuracy']:.4f}</b> ({share:.1%} of the teacher's"
                     f"{_difference(pairs, 'student - teacher')}), {student['params'] / teacher['params']:.0%} of its "
                     f"parameters, {student['reviews_per_s'] / teacher['reviews_per_s']:.1f}x its CPU speed.")
        lines.append(f"Student in int8: accuracy <b>{int8['cpu_sample']['accuracy']:.4f}</b> against the teacher's "
                     f"{teacher['cpu_sample']['accuracy']:.4f} on the same {reviews['cpu_sample']:,} test reviews"
                     f"{_difference(pairs, 'student_int8 - student')}, "
                     f"{int8['reviews_per_s'] / teacher['reviews_per_s']:.1f}x the teacher's CPU speed.")
    return "".join(f"<p>{line}</p>\n" for line in lines)


def _difference(paired, pair):
    """'; student - teacher: -0.4 points (...), within noise' (helpers.evaluate.paired), or nothing for an old run."""
    if pair not in paired:
        return ""
    from helpers.evaluate.paired import paired_sentence

    return "; " + html.escape(paired_sentence(pair, paired[pair]))


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
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. runs/quick")
    run_dir = parser.parse_args(argv).run_dir
    if not run_dir.is_dir():
        parser.error(f"{run_dir} is not a folder")
    print(write_report(run_dir))

