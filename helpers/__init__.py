"""Fine-tune BERT on IMDB sentiment, evaluate it, and distil it into DistilBERT.

The notebooks in `notebooks/` are thin callers of this package; every behaviour lives here, in one
sub-package per stage the notebooks run, one for using the trained models, and the machinery around:

    core      files, progress bars, the labels and P(positive), precision and int8, the model loader
    runs      the parameters and profiles, the run folder and the names of its files
    data      01: load IMDB, check it, subset and split it; extra test sets, unlabelled reviews
    tokens    02: the tokenizer, truncation, tokenized splits and their lengths
    train     03: batches, the training loop (teacher and student), checkpoints, the one prediction path
    evaluate  04: metrics, calibration, the bag-of-words baseline, the demo, the figures
    serve     afterwards: score files with a run's model or its ONNX export; export with a model card
    distill   05: the distillation loss, the student's CPU copies, teacher against student
    pipeline  the stages as functions, the batch runner, notebook set-up, estimates, report, Colab

`LAYERS` is the order imports follow: a module imports only from its own sub-package or one listed
before it (tests/test_package.py checks this and that no import cycle exists anywhere in the repository).
`serve` sits below `distill` because the distill stage times the ONNX copies that serve's exporter makes.
The entry points `python -m helpers.run | helpers.predict | helpers.export | helpers.report` are the
four modules at the top level; they only call their sub-package's `main`.
"""

__version__ = "0.1.0"
LAYERS = ("core", "runs", "data", "tokens", "train", "evaluate", "serve", "distill", "pipeline")
