"""The demo panel of the evaluate notebook: explanations, the list of mistakes, widgets, batch fallback."""
import numpy as np
import pandas as pd
import pytest

from helpers.core import sentiment
from helpers.core.files import write_frame, write_json
from helpers.evaluate import demo, metrics
from helpers.runs.config import resolve_params
from helpers.runs.run_folder import Run
from helpers.tokens import tokens
from helpers.train import prediction

LONG = "the plot drags on " * 60 + "but the ending is excellent"


@pytest.fixture
def run(tmp_path, tiny_teacher, tiny_tokenizer):
    """A run folder with what the demo reads: a trained model, a tokenizer, test predictions."""
    tiny_teacher.save_pretrained(tmp_path / "train" / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "tokenize" / "tokenizer")
    frame = pd.DataFrame({"text": [f"review number {i} <br />is here" for i in range(6)], "label": [1, 0, 1, 0, 1, 0]})
    probs = np.array([0.2, 0.1, 0.9, 0.95, 0.01, 0.6])  # wrong: 0 (conf .8), 3 (.95), 4 (.99), 5 (.6)
    write_frame(tmp_path / "evaluate" / "predictions.parquet", metrics.prediction_table(frame, probs), index=False)
    write_json(tmp_path / "evaluate" / "calibration.json", {"temperature": 2.0})  # what the evaluate stage fitted
    return Run(tmp_path, "smoke", resolve_params("smoke", {"max_length": 32, "truncation_head": 0.25}))


@pytest.mark.parametrize("head_share, cut_from", [(0.25, "middle"), (1.0, "end"), (0.0, "start")])
def test_cut_tokens_are_exactly_the_ones_truncation_drops(tiny_teacher, tiny_tokenizer, head_share, cut_from):
    e = demo.explain(LONG, tiny_teacher, tiny_tokenizer, 32, head_share)
    ids = tokens.full_ids(tiny_tokenizer, [LONG])[0]
    every_piece = tiny_tokenizer.convert_ids_to_tokens(ids)
    assert len(e.kept) == 32 and len(e.cut) == len(ids) - 32 > 0
    assert e.kept[:e.cut_at] + e.cut + e.kept[e.cut_at:] == every_piece
    assert e.kept == tiny_tokenizer.convert_ids_to_tokens(tokens.truncate(ids, 32, head_share))  # what training sees
    assert e.kept[0] == "[CLS]" and e.kept[-1] == "[SEP]" and e.cut_from == cut_from
    assert ("excellent" in e.kept) == (head_share < 1.0)  # head+tail keeps the verdict at the end


def test_a_short_review_loses_nothing_and_the_label_follows_the_probability(tiny_teacher, tiny_tokenizer):
    e = demo.explain("a fine film", tiny_teacher, tiny_tokenizer, 32, 0.25)
    assert e.cut == [] and e.cut_from == "" and e.kept == tiny_tokenizer.convert_ids_to_tokens(
        tiny_tokenizer("a fine film")["input_ids"])
    assert 0.0 < e.prob_positive < 1.0
    assert e.label == int(e.prob_positive >= 0.5) and e.label_name == ("positive" if e.label else "negative")
    assert "nothing cut" in demo.describe(e)


def test_the_probability_is_the_one_batch_prediction_gives(tiny_teacher, tiny_tokenizer):
    from helpers.core.accelerators import make_accelerator
    from helpers.train.trainer import TrainSettings

    frame = pd.DataFrame({"text": [LONG, "a fine film"], "label": [1, 1]})
    ds = tokens.tokenize_splits({"t": frame}, tiny_tokenizer, 32, 0.25)["t"]
    settings = TrainSettings.from_params(resolve_params("smoke"))
    logits = prediction.predict_sets(tiny_teacher, {"t": ds}, tiny_tokenizer, 2, make_accelerator(settings))["t"]
    batch = sentiment.positive_probability(logits)
    one = [demo.explain(t, tiny_teacher, tiny_tokenizer, 32, 0.25).prob_positive for t in frame["text"]]
    np.testing.assert_allclose(one, batch, atol=1e-5)


def test_wrong_reviews_are_only_the_mistakes_surest_first(run):
    wrong = demo.wrong_reviews(run)
    assert list(wrong.index) == [4, 3, 0, 5]  # test rows, by confidence .99, .95, .8, .6
    assert (wrong["predicted"] != wrong["label"]).all()
    assert wrong.loc[4, "text"] == "review number 4 <br />is here"  # the full text, as the model read it


def test_long_cut_lists_are_abbreviated():
    pieces = [f"p{i}" for i in range(300)]
    short = demo.abbreviate(pieces, shown=3)
    assert short == "p0 p1 p2 ... p297 p298 p299"
    assert demo.abbreviate(pieces[:6], shown=3) == "p0 p1 p2 p3 p4 p5"


def test_panel_lists_the_mistakes_and_its_callbacks_fill_the_result(run, tiny_teacher, tiny_tokenizer):
    p = demo.panel(run, tiny_teacher, tiny_tokenizer)
    assert [value for _, value in p.reviews.options] == [None, 4, 3, 0, 5]
    assert p.reviews.options[1][0].startswith("1. positive read as negative (99%)")

    p.reviews.value = 3  # picking a mistake fills the text box and predicts it
    assert p.text.value == "review number 3 <br />is here"
    expected = demo.explain(p.text.value, tiny_teacher, tiny_tokenizer, 32, 0.25)
    assert p.bar.value == pytest.approx(expected.prob_positive)
    assert f"<b>{expected.label_name}</b>" in p.result.value and "nothing cut" in p.result.value
    assert "<br />is" not in p.result.value  # review text never goes into the HTML unescaped

    p.text.value = LONG
    p.predict.click()
    long = demo.explain(LONG, tiny_teacher, tiny_tokenizer, 32, 0.25)
    assert f"{len(long.cut)} tokens cut from the middle" in p.result.value
    assert p.bar.value == pytest.approx(long.prob_positive)

    p.text.value = "   "
    p.predict.click()
    assert "first" in p.result.value


def test_show_prints_a_static_example_in_batch_runs(run, monkeypatch, capsys):
    monkeypatch.setattr(demo, "in_batch_run", lambda: True)
    monkeypatch.setattr(demo, "_live_kernel", lambda: True)  # even inside a kernel
    monkeypatch.setattr("IPython.display.display", lambda *a: pytest.fail("no widgets in a batch run"))
    demo.show(run)
    out = capsys.readouterr().out
    assert "most confidently wrong (true label: positive)" in out and "review number 4" in out
    assert demo.EXAMPLE_REVIEW[:40] in out
    assert out.count("P(positive): [") == 2 and out.count("predicted: ") == 2


def test_show_without_ipywidgets_falls_back_to_the_example(run, monkeypatch, capsys):
    monkeypatch.setattr(demo, "in_batch_run", lambda: False)
    monkeypatch.setattr(demo, "_live_kernel", lambda: True)
    monkeypatch.setitem(__import__("sys").modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    demo.show(run)
    assert "A static example" in capsys.readouterr().out


def test_show_displays_the_panel_in_a_live_session(run, monkeypatch, capsys):
    monkeypatch.setattr(demo, "in_batch_run", lambda: False)
    monkeypatch.setattr(demo, "_live_kernel", lambda: True)
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    demo.show(run)
    assert len(shown) == 1 and type(shown[0]).__name__ == "VBox"
    assert capsys.readouterr().out == ""


def test_the_demo_predicts_with_the_evaluate_stages_temperature_and_leaves_the_saved_model_raw(run, tiny_teacher,
                                                                                            tiny_tokenizer):
    saved = (run.dir / "train" / "model" / "model.safetensors").read_bytes()
    model, tokenizer = demo.load(run)
    calibrated = demo.explain("a fine film", model, tokenizer, 32).prob_positive
    raw_logits = prediction.predict_logits(tiny_teacher.eval(), tokens.tokenize_splits(
        {"t": pd.DataFrame({"text": ["a fine film"], "label": [0]})}, tiny_tokenizer, 32)["t"], tiny_tokenizer, 1)
    assert calibrated == pytest.approx(float(sentiment.positive_probability(raw_logits, 2.0)[0]), abs=1e-5)
    assert (run.dir / "train" / "model" / "model.safetensors").read_bytes() == saved
