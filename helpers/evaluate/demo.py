"""Try the trained model on your own words: an ipywidgets panel showing the label, P(positive) and the word pieces
truncation cut (by the tokenize stage's own code), and a dropdown of the test reviews the model got wrong. Widgets
have no live state in a papermill run, so `show` prints a static example there instead of a dead panel.
"""
import html
import importlib.util
import sys
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import pandas as pd
import torch

from helpers.core.progress import in_batch_run
from helpers.core.sentiment import DECISION_THRESHOLD, LABEL_NAMES, positive_probability
from helpers.data.imdb import preview
from helpers.evaluate import calibration, metrics
from helpers.runs import layout
from helpers.tokens import tokens, truncation
from helpers.train.prediction import batch_logits

EXAMPLE_REVIEW = ("The first hour drags and the dialogue is clumsy, but the last act is wonderful: "
                  "moving, funny and beautifully shot. I would happily watch it again.")
MAX_OPTIONS = 200  # the dropdown lists at most this many wrong reviews, surest mistake first
SHOWN_PIECES = 12  # a long run of cut pieces shows this many from each end


@dataclass(frozen=True)
class Explanation:
    label: int  # 0 or 1, the predicted class
    label_name: str  # "negative" or "positive"
    prob_positive: float
    kept: list  # word pieces the model read, in order, [CLS] and [SEP] included
    cut: list  # word pieces truncation dropped, in order; empty when the review fits
    cut_at: int  # position in `kept` where the cut pieces were taken out
    cut_from: str  # "start", "middle" or "end" of the review; "" when nothing was cut


def explain(text, model, tokenizer, max_length, truncation_head=1.0):
    """Predict one review and say which of its word pieces truncation cut before the model saw it."""
    ids = tokens.full_ids(tokenizer, [text])[0]
    start, stop = truncation.cut_span(len(ids), max_length, truncation_head)
    kept = truncation.truncate(ids, max_length, truncation_head)
    input_ids = torch.tensor([kept])
    prob = float(positive_probability(batch_logits(model, {"input_ids": input_ids,
                                                             "attention_mask": torch.ones_like(input_ids)}).numpy())[0])
    label = int(prob >= DECISION_THRESHOLD)
    cut_from = "" if start == stop else "start" if start == 1 else "end" if stop == len(ids) - 1 else "middle"
    return Explanation(label, LABEL_NAMES[label], prob, tokenizer.convert_ids_to_tokens(kept),
                       tokenizer.convert_ids_to_tokens(ids[start:stop]), start, cut_from)


def load(run):
    """The teacher, calibrated in memory only (the saved model stays raw), and its tokenizer; on the GPU if any."""
    model = calibration.fold_temperature(*calibration.load_with_temperature(run, "teacher"))
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    return model, tokens.load_saved_tokenizer(run.require("tokenize"))


def wrong_reviews(run):
    """The test reviews the model got wrong, surest mistake first, indexed by test row."""
    return metrics.wrong_predictions(pd.read_parquet(run.require(layout.PREDICTIONS)))


def describe(e, shown=SHOWN_PIECES):
    """An Explanation as plain text: label, a text bar for the probability, what was cut."""
    filled = round(e.prob_positive * 20)
    return "\n".join([f"predicted: {e.label_name} (label {e.label})",
                      f"P(positive): [{'#' * filled}{'.' * (20 - filled)}] {e.prob_positive:.3f}",
                      f"tokens read: {len(e.kept)}", f"{cut_summary(e)}: {abbreviate(e.cut, shown)}" if e.cut
                      else "nothing cut: the whole review was read"])


def cut_summary(e):
    return f"{len(e.cut)} tokens cut from the {e.cut_from} (after token {e.cut_at} of {len(e.kept)} read)"


def abbreviate(pieces, shown=SHOWN_PIECES):
    """Word pieces joined by spaces; a long list keeps `shown` from each end around an ellipsis."""
    if len(pieces) <= 2 * shown:
        return " ".join(pieces)
    return f"{' '.join(pieces[:shown])} ... {' '.join(pieces[-shown:])}"


def print_example(run):
    """What a batch run shows instead of the panel: the surest mistake and one typed review, as text."""
    model, tokenizer = load(run)
    print("Interactive demo: open this notebook in Jupyter or Colab to try your own reviews. A static example:")
    surest = wrong_reviews(run).head(1)
    examples = [(f"The test review the model got most confidently wrong (true label: {LABEL_NAMES[int(label)]}):", text)
                for text, label in zip(surest["text"], surest["label"])] + [("A typed review:", EXAMPLE_REVIEW)]
    for title, text in examples:
        print(f"\n{title}\n  {preview(text, 300)}")
        print(describe(explain(text, model, tokenizer, run.params.max_length, run.params.truncation_head)))


def panel(run, model=None, tokenizer=None, max_options=MAX_OPTIONS):
    """The demo's widgets by name (a text box, a Predict button, a bar, the result, the mistakes; `box` holds them
    all), so a test or a curious user can drive them; `explain` is text -> Explanation with the run's model."""
    import ipywidgets as widgets

    if model is None:
        model, tokenizer = load(run)
    wrong = wrong_reviews(run).head(max_options)
    text = widgets.Textarea(placeholder="Type or paste a review, then press Predict",
                            layout=widgets.Layout(width="100%", height="140px"))
    predict = widgets.Button(description="Predict", button_style="primary")
    options = [("(a test review the model got wrong)", None)] + [
        (f"{n}. {LABEL_NAMES[int(r.label)]} read as {LABEL_NAMES[int(r.predicted)]} ({r.confidence:.0%}): "
         f"{preview(r.text, 60)}", i) for n, (i, r) in enumerate(wrong.iterrows(), 1)]
    reviews = widgets.Dropdown(options=options, value=None, description="Mistakes:",
                               layout=widgets.Layout(width="100%"))
    bar = widgets.FloatProgress(value=0.5, min=0.0, max=1.0, description="P(positive)",
                                style={"description_width": "initial"})
    result = widgets.HTML()
    run_explain = partial(explain, model=model, tokenizer=tokenizer, max_length=run.params.max_length,
                          truncation_head=run.params.truncation_head)

    def on_predict(_=None):
        if not text.value.strip():
            result.value = "<i>Type or paste a review first.</i>"
            return
        e = run_explain(text.value)
        bar.value = e.prob_positive
        bar.bar_style = "success" if e.label else "danger"
        result.value = to_html(e)

    def on_pick(change):
        if change["new"] is not None:
            text.value = wrong.loc[change["new"], "text"]
            on_predict()

    predict.on_click(on_predict)
    reviews.observe(on_pick, names="value")
    return SimpleNamespace(box=widgets.VBox([reviews, text, widgets.HBox([predict, bar]), result]), text=text,
                           predict=predict, reviews=reviews, bar=bar, result=result, explain=run_explain)


def to_html(e, shown=SHOWN_PIECES):
    """The result line and, in grey, the cut word pieces (escaped: reviews hold '<br />')."""
    head = f"<b>{e.label_name}</b> &nbsp; P(positive) = {e.prob_positive:.3f} &nbsp; ({len(e.kept)} tokens read)"
    if not e.cut:
        return head + "<br><span style='color:grey'>nothing cut: the model read the whole review</span>"
    return (head + f"<br><span style='color:grey'>{html.escape(cut_summary(e))}: "
            f"{html.escape(abbreviate(e.cut, shown))}</span>")


def show(run):
    """The panel in a live Jupyter or Colab session; a printed example in batch runs or without ipywidgets."""
    if in_batch_run() or not _live_kernel() or importlib.util.find_spec("ipywidgets") is None:
        print_example(run)
        return
    if "google.colab" in sys.modules:  # Colab draws ipywidgets 8 only through its custom widget manager
        from google.colab import output
        output.enable_custom_widget_manager()
    from IPython.display import display

    display(panel(run).box)


def _live_kernel():
    """A Jupyter kernel is there to run widget callbacks (not plain Python, not terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None
