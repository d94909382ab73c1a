"""The model card of an export folder (README.md with Hugging Face metadata), every figure read from the run's
own files: data and source, the command, accuracy beside teacher and baseline, calibration, known limits.
"""
from helpers.core.files import read_json
from helpers.evaluate.calibration import calibration_summary, lowered_nll
from helpers.runs import layout
from helpers.runs.run_folder import profile_overrides

IMDB = ("the Large Movie Review Dataset (Maas et al. 2011, https://ai.stanford.edu/~amaas/data/sentiment/; "
        "`stanfordnlp/imdb` on the Hugging Face hub)")
METADATA = ("---\nlanguage: en\nlicense: apache-2.0\ndatasets: [stanfordnlp/imdb]\nmetrics: [accuracy]\npipeline_tag: "
            "text-classification\nlibrary_name: onnx\ntags: [onnx, sentiment-analysis, knowledge-distillation]\n---\n")


def _accuracy(scores):
    low, high = scores["accuracy_ci95"]
    return f"{scores['accuracy']:.3f} (95% interval {low:.3f}-{high:.3f})"


def _data_source(params, splits):
    """Where the run's reviews came from, in words, with the number in each split."""
    counts = ", ".join(f"{row['reviews']:,} {row['split']}" for row in splits if row["split"] != "unlabelled")
    if params["data"] == "sample":
        where = f"A stratified sample of {IMDB}, shipped with the project"
    elif "/" in params["data"] and not params["data"].startswith((".", "/", "~")):
        where = f"The hub dataset `{params['data']}`" + (f", i.e. {IMDB}" if params["data"].endswith("imdb") else "")
    else:
        where = f"The local files of `{params['data']}`"
    unlabelled = f"{params['n_unlabelled']:,}" if params.get("n_unlabelled") else "all the"
    extra = (f" The student also learnt from {unlabelled} unlabelled IMDB reviews "
             "labelled by the teacher." if params.get("n_unlabelled") != 0 else "")
    return f"{where}: {counts} reviews (English movie reviews, labelled negative or positive).{extra}"


def _results(comparison):
    """Rows of the results table: every model of the comparison on the test reviews it was scored on."""
    reviews, rows = comparison["reviews"], []
    for name, row in comparison["models"].items():
        where = next((key for key in ("test", "cpu_sample", "timed") if row.get(key)), None)  # the most reviews read
        if where:
            rows.append(f"| {name} | {_accuracy(row[where])} | {reviews[where]:,} | {row['size_mb']:.1f} | "
                        f"{row['reviews_per_s']:.1f} |")
    return "\n".join(rows)


def _short_sentences(comparison, whole):
    """The known limit: accuracy on single sentences, against the baseline's and its own on whole reviews."""
    short = comparison.get("extra_test_sets", {}).get("short")
    if not short:
        return ("it learnt from whole reviews, and this run measured nothing shorter (add `-p extra_test short` to "
                "score single sentences).")
    student, baseline = short["models"]["student"]["test"], short["models"]["baseline"]["test"]
    return (f"it learnt from whole reviews. On {short['reviews']['test']:,} single sentences from IMDB reviews "
            f"(Kotzias et al. 2015) its accuracy is {_accuracy(student)} (whole reviews: {whole['accuracy']:.3f}), "
            f"the TF-IDF baseline's {_accuracy(baseline)}. Texts shorter than that, or unlike reviews, are untested.")


def model_card(run, serving):
    """The card's text for `run`'s export with settings `serving` (helpers.export)."""
    params = run.params.to_dict()
    metrics, fitted, comparison, splits = (read_json(run.require(name)) for name in (
        layout.STUDENT_METRICS, layout.STUDENT_CALIBRATION, layout.COMPARISON, layout.SPLITS_SUMMARY))
    models = comparison["models"]
    cpu = comparison.get("cpu", {"threads": "the machine's", "batch_size": params["eval_batch_size"]})
    cut = ("the first tokens" if serving["truncation_head"] == 1.0 else
           f"the first {serving['truncation_head']:.0%} of them from the start and the rest from the end")
    files = "\n".join(f"- `{path}`: {name}" for name, path in serving["files"].items())
    overrides = "".join(f" -p {name} {value}" for name, value in profile_overrides(run.profile, run.params).items())
    return f"""{METADATA}
# IMDB sentiment: a distilled student, exported to ONNX

A {models['student']['params'] / 1e6:.1f}M-parameter DistilBERT student distilled from a fine-tuned
`{params['model']}` teacher ({models['teacher']['params'] / 1e6:.1f}M parameters). It reads an English movie
review and answers NEGATIVE or POSITIVE with {"a calibrated" if lowered_nll(fitted) else "a"} probability.

## Data

{_data_source(params, splits)}

## How it was made

Profile `{run.profile}` of the imdb-distil project, seed {params['seed']}; reviews are cut to
{serving['max_length']} tokens, keeping {cut}. The commands:

```
python -m helpers.run {run.profile}{overrides}
python -m helpers.export RUN_DIR
```

## Results

Test accuracy {_accuracy(metrics)} on {metrics['n']:,} test reviews. Beside the teacher, the TF-IDF
baseline (1-2 grams, logistic regression) and the student's CPU copies (`student_int8`: PyTorch int8;
`student_onnx`, `student_onnx_int8`: the ONNX files here), on the same reviews; CPU speed measured on
the run's machine, {cpu['threads']} threads, batch {cpu['batch_size']}:

| model | accuracy | reviews | size (MB) | reviews/s (CPU) |
| --- | --- | --- | --- | --- |
{_results(comparison)}

The ONNX copies were checked against PyTorch on {serving['check']['student']['reviews']} test reviews: largest logit
difference {serving['check']['student']['max_abs_logit_diff']:.1e}.

## Calibration

Temperature scaling (Guo et al. 2017), folded into the classifier. {calibration_summary(fitted)}

## Known limits

- Short texts: {_short_sentences(comparison, metrics)}
- Long reviews are cut to {serving['max_length']} tokens; what lies beyond is not read.
- Trained on English movie reviews only; other domains and languages will score worse, unmeasured here.
- Test sets of this size leave the interval above: differences within it may be chance.

## Intended use

Scoring the sentiment of English movie reviews, and learning how distillation, calibration and
quantization trade accuracy for speed. Not for decisions about people, and not without checking its
accuracy on your own labelled reviews first (helpers.predict prints it when your file has a `label` column).

## Use it

```
python -m helpers.predict EXPORT_DIR reviews.csv --out scored.csv     # --model int8 for the int8 copy
```

## Files

{files}
- `tokenizer.json`: the tokenizer; `serving.json`: truncation, labels and the files above
"""
