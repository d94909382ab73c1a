"""report.html: built from a synthetic run folder (fast), and checked in headless Chromium.

The Chromium check of a real smoke run is in test_notebooks.py, which already pays for one.
"""
import base64
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from headless import body_attributes, render  # noqa: E402

from helpers.pipeline import report

FIGURES = ("data/label_balance.png", "data/review_words.png", "tokenize/token_lengths.png", "train/loss_curve.png",
           "evaluate/confusion_matrix.png", "distill/student_loss_curve.png")
HEADINGS = ("Summary", "Parameters", "Environment", "Data", "Token lengths", "Training", "Test metrics", "Distillation")
NASTY = '<script>alert("x")</script> & <b>bold</b>'


def _png(path):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=20)
    plt.close(fig)


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _history():
    return {"precision": "no", "epochs": [{"epoch": 1, "val_loss": 0.69, "val_accuracy": 0.5, "saved": True},
                                          {"epoch": 2, "val_loss": 0.6, "val_accuracy": 0.75, "saved": True}]}


def _comparison():
    scores = {"accuracy": 0.75, "f1": 0.7}
    row = {"params": 4e6, "size_mb": 16.0, "reviews_per_s": 200.0, "test": scores, "cpu_sample": scores}
    return {"reviews": {"test": 32, "cpu_sample": 32, "timed": 32},
            "models": {"teacher": row, "student": {**row, "params": 2e6, "size_mb": 8.0},
                       "student_int8": {**row, "params": 2e6, "size_mb": 3.0, "reviews_per_s": 300.0}}}


def make_run(root, stages=("data", "tokenize", "train", "evaluate", "distill")):
    """A run folder with small stand-ins for every file a real run writes, up to `stages`."""
    _json(root / "params.json", {"profile": "smoke", "params": {"n_train": 80, "lr": 5e-5, "data": NASTY, "n_test": None}})
    _json(root / "environment.json", {"python": "3.11", "device": "cpu", "packages": {"torch": "2.13.0"}})
    _json(root / "timings.json", {"01_data.ipynb": 2.0, "02_tokenize.ipynb": 3.5})
    if "data" in stages:
        _json(root / "data/summary.json", [{"split": "train", "reviews": 80, "negative": 40, "positive": 40}])
    if "tokenize" in stages:
        _json(root / "tokenize/length_stats.json", [{"split": "train", "median": 230, "truncated": 0.1}])
    if "train" in stages:
        _json(root / "train/history.json", _history())
    if "evaluate" in stages:
        _json(root / "evaluate/metrics.json", {"accuracy": 0.75, "f1": 0.7, "precision": 0.8, "recall": 0.6, "n": 32})
        errors = pd.DataFrame({"text": [NASTY, "x" * 1000], "label": [0, 1], "prob_positive": [0.99, 0.01]})
        errors.to_csv(root / "evaluate/confident_errors.csv")
    if "distill" in stages:
        _json(root / "distill/history.json", _history())
        _json(root / "distill/metrics.json", {"accuracy": 0.75})
        _json(root / "distill/comparison.json", _comparison())
    for figure in FIGURES:
        if figure.split("/")[0] in stages:
            _png(root / figure)
    return root


def test_a_complete_run_shows_every_section_and_embeds_every_figure(tmp_path):
    run = make_run(tmp_path / "run")
    page = report.write_report(run).read_text()
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert "Not run yet" not in page and "class=\"missing\"" not in page
    assert page.count("<img ") == len(FIGURES)
    for figure in FIGURES:
        assert base64.b64encode((run / figure).read_bytes()).decode() in page
    assert "student_int8 / teacher" in page and "student / teacher" in page
    assert "<td>0.188</td>" in page  # student_int8 size 3 MB / 16 MB, the ratio row (rounded to 3)
    assert 'src="http' not in page and "<link" not in page  # self-contained
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert summary.count("<td>done</td>") == 5 and "Teacher: test accuracy <b>0.7500</b>" in summary
    assert "Student: test accuracy <b>0.7500</b> (100.0% of the teacher's), 50% of its parameters" in summary
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Parameters</h2>")  # the outcome leads


def test_paired_differences_and_calibration_are_shown_with_their_noise(tmp_path):
    run = make_run(tmp_path / "run")
    noise = {"difference": -0.005, "ci95": [-0.02, 0.01], "p_mcnemar": 0.61, "only_a_right": 7, "only_b_right": 12, "n": 32}
    real = {"difference": 0.03, "ci95": [0.01, 0.05], "p_mcnemar": 0.002, "only_a_right": 40, "only_b_right": 10, "n": 1000}
    _json(run / "evaluate/paired.json", {"test": {"teacher - baseline": real}})
    _json(run / "evaluate/test_sets.json", {"test": {name: {"n": 1000, "accuracy": accuracy, "accuracy_ci95": [0.7, 0.9],
                                                            "f1": 0.8} for name, accuracy in (("teacher", 0.83), ("baseline", 0.8))}})
    _json(run / "distill/comparison.json", {**_comparison(), "paired": {"student - teacher": noise}})
    fitted = {"temperature": 1.24, "val_reviews": 200, "bins": 15, "ece_uncalibrated": 0.044, "ece": 0.03,
              "ece_uncalibrated_ci95": [0.031, 0.062], "ece_ci95": [0.021, 0.047], "nll_uncalibrated": 0.35, "nll": 0.33}
    _json(run / "evaluate/calibration.json", fitted)
    page = report.write_report(run).read_text()
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert "student - teacher: -0.5 points (95% paired interval -2.0 to +1.0; McNemar p 0.61; 32 reviews), within noise" in summary
    assert "teacher - baseline: +3.0 points" in summary and "beyond noise, a gain" in summary
    assert "0.030 (95% interval 0.021-0.047) after" in page and "the temperature lowered it" in page
    assert "<td>student - teacher</td>" in page  # the comparison table's paired row


def test_text_from_the_data_is_escaped(tmp_path):
    page = report.write_report(make_run(tmp_path / "run")).read_text()
    assert NASTY not in page and "<b>bold</b>" not in page and "<script>alert" not in page
    assert "&lt;script&gt;" in page
    assert "x" * 1000 not in page and "x" * 300 + " …" in page  # long reviews are cut


@pytest.mark.parametrize("stages", [(), ("data",), ("data", "tokenize", "train")])
def test_a_run_stopped_early_shows_not_run_yet_for_the_missing_stages(tmp_path, stages):
    run = make_run(tmp_path / "run", stages)
    page = report.write_report(run).read_text()
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    missing = 5 - len(stages)
    assert page.count("Not run yet") == missing
    assert page.count("<img ") == sum(f.split("/")[0] in stages for f in FIGURES)


def test_an_empty_folder_still_gets_a_page(tmp_path):
    page = report.write_report(tmp_path).read_text()
    assert page.count("Not run yet") == len(HEADINGS) - 1  # all but the summary, which lists every stage
    assert page.count("<td>not run</td>") == 5


def test_a_missing_figure_beside_its_table_is_named(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "evaluate/confusion_matrix.png").unlink()
    page = report.write_report(run).read_text()
    assert "figure missing: evaluate/confusion_matrix.png" in page and page.count("<img ") == len(FIGURES) - 1


def test_the_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    target = report.write_report(run)
    assert sorted(p.name for p in run.iterdir()) == sorted(before + ["report.html"])
    old = target.read_bytes()

    def broken(run_dir):
        raise RuntimeError("half-way")

    monkeypatch.setattr(report, "SECTIONS", report.SECTIONS + (("broken", "Broken", broken),))
    with pytest.raises(RuntimeError):
        report.write_report(run)
    assert target.read_bytes() == old  # the previous report is untouched
    assert sorted(p.name for p in run.iterdir()) == sorted(before + ["report.html"])


def test_the_command_line_rebuilds_a_report(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    report.main([str(run)])
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "nowhere")])


ESTIMATES = {  # what helpers.pipeline.estimates writes before each stage; 02 and 03 ran, 03 is the failing row below
    "data": {"seconds": 4.0, "parts": {"kernel start and imports": 3.0, "figures and tables": 1.0}, "device": "this CPU",
             "precision": "fp32", "measured_gflops": 120.0, "work": "120 reviews split"},
    "tokenize": {"seconds": 7.0, "parts": {"kernel start and imports": 3.0, "tokenizing": 4.0}, "device": "this CPU",
                 "precision": "fp32", "measured_gflops": 120.0, "work": NASTY},
    "distill_cpu": {"seconds": 12.5, "measured_seconds": 10.0, "parts": {"int8 student": 12.5}, "device": "this CPU",
                    "precision": "fp32 and int8", "measured_gflops": 90.0, "work": "int8 student on 40 reviews"},
}


def test_the_summary_shows_each_estimate_beside_its_seconds(tmp_path):
    run = make_run(tmp_path / "run")
    _json(run / "estimates.json", ESTIMATES)
    page = report.write_report(run).read_text()
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert "<th>seconds</th>\n      <th>estimated seconds</th>\n      <th>seconds / estimated</th>" in summary
    assert "<td>01 data</td>\n      <td>done</td>\n      <td>2</td>\n      <td>4</td>\n      <td>0.5</td>" in summary
    assert "<td>02 tokenize</td>\n      <td>done</td>\n      <td>3.5</td>\n      <td>7</td>\n      <td>0.5</td>" in summary
    assert "<td>03 train</td>\n      <td>done</td>\n      <td></td>\n      <td></td>\n      <td></td>" in summary  # none
    assert "<td>05 distill: its CPU part</td>\n      <td>part of 05</td>\n      <td>10</td>\n      <td>12.5</td>" in summary
    assert summary.count("<td>done</td>") == 5 and "How each estimate was made" in summary
    assert NASTY not in page  # an estimate's words are escaped like everything else


def test_without_estimates_the_summary_has_no_estimate_column(tmp_path):
    page = report.write_report(make_run(tmp_path / "run")).read_text()
    assert "estimated seconds" not in page and "How each estimate was made" not in page


# --- headless Chromium: each check shown able to fail -------------------------------------------

def test_chromium_sees_every_figure_of_the_synthetic_report(tmp_path):
    dom, console = render(report.write_report(make_run(tmp_path / "run")))
    assert body_attributes(dom) == {"data-figures": str(len(FIGURES)), "data-figures-loaded": str(len(FIGURES))}
    assert console == []


def test_chromium_shows_the_estimates_without_errors(tmp_path):
    run = make_run(tmp_path / "run")
    _json(run / "estimates.json", ESTIMATES)
    dom, console = render(report.write_report(run))
    assert console == [] and "<th>estimated seconds</th>" in dom and "<td>05 distill: its CPU part</td>" in dom
    assert "<summary>How each estimate was made" in dom


def test_chromium_catches_a_broken_figure(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "train/loss_curve.png").write_bytes(b"not a png")
    dom, console = render(report.write_report(run))
    assert body_attributes(dom) == {"data-figures": str(len(FIGURES)), "data-figures-loaded": str(len(FIGURES) - 1)}
    assert 'class="missing">figure missing: train/loss_curve.png' in dom


def test_chromium_catches_console_errors_and_uncaught_exceptions(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('deliberate');</script>"
                    "<script>undefinedFunction();</script></body></html>")
    _, console = render(page)
    assert len(console) == 2, console
    assert '"deliberate"' in console[0] and "Uncaught ReferenceError: undefinedFunction" in console[1]


def test_a_batch_run_whose_stage_fails_still_writes_its_report(tmp_path, monkeypatch, capsys):
    """The runner with papermill stubbed: the second notebook fails, the report shows what exists."""
    import papermill

    from helpers.pipeline import runner as runner
    from helpers.pipeline.checks import open_run

    monkeypatch.delenv("JUPYTER_PATH", raising=False)  # execute_notebooks sets it; restored afterwards
    calls = []

    def fake_execute(source, output, **kwargs):
        calls.append(source.name)
        if len(calls) == 2:
            raise papermill.PapermillExecutionError(3, 3, "train()", "RuntimeError", "stage broke", [])

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    run = open_run("smoke", tmp_path / "run")
    assert runner.execute_notebooks(run, {}, "python3") is True and len(calls) == 2
    page = (run.dir / "report.html").read_text()
    assert page.count("Not run yet") == 5 and "Profile <b>smoke</b>" in page
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert "<td>02 tokenize</td>\n      <td>failed: RuntimeError: stage broke</td>" in summary  # with its time
    assert summary.count("<td>not run</td>") == 4 and "Total time" in summary
    assert f"report of the stages so far: {run.dir / 'report.html'}" in capsys.readouterr().out
