"""The pipeline's stages and where each leaves its files in a run folder: one table for all.

The runner, the notebooks' set-up (helpers.notebook), the run folder (helpers.runs) and the
report (helpers.report) all read it, so a stage is renamed or added in one place.
"""
# stage -> (its notebook, its folder in the run folder, the file it writes last: there, it has finished)
STAGES = {
    "data": ("01_data.ipynb", "data", "data/summary.json"),
    "tokenize": ("02_tokenize.ipynb", "tokenized", "tokenized/length_stats.json"),
    "train": ("03_train.ipynb", "train", "train/history.json"),
    "evaluate": ("04_evaluate.ipynb", "eval", "eval/metrics.json"),
    "distill": ("05_distill.ipynb", "distill", "distill/comparison.json"),
}
NOTEBOOKS = {stage: notebook for stage, (notebook, _, _) in STAGES.items()}
FOLDERS = {stage: folder for stage, (_, folder, _) in STAGES.items()}
DONE_MARKERS = {stage: marker for stage, (_, _, marker) in STAGES.items()}
FAILURE_FILE = "failure.json"  # written by the runner when a notebook fails: which one, and its error
ESTIMATES_FILE = "estimates.json"  # helpers.estimates: each stage's estimated seconds, written before the stage runs
