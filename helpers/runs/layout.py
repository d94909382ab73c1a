"""The pipeline's stages and where each leaves its files in a run folder: one table for all.

Each stage writes into the folder of its own name (`data/`, `tokenize/`, `train/`, `evaluate/`,
`distill/`). The runner, the notebooks' set-up (helpers.pipeline.notebook), the run folder
(helpers.runs.run_folder) and the report (helpers.report) all read this table, so a stage is renamed
or added in one place.
"""
# stage -> (its notebook, the file it writes last in its folder: there, it has finished)
STAGES = {
    "data": ("01_data.ipynb", "data/summary.json"),
    "tokenize": ("02_tokenize.ipynb", "tokenize/length_stats.json"),
    "train": ("03_train.ipynb", "train/history.json"),
    "evaluate": ("04_evaluate.ipynb", "evaluate/metrics.json"),
    "distill": ("05_distill.ipynb", "distill/comparison.json"),
}
# where the stage that makes each model saves it (raw, as trained) and the calibration temperature it fitted
MODEL_FOLDERS = {"teacher": ("train", "model"), "student": ("distill", "model")}
CALIBRATION_FILES = {"teacher": ("evaluate", "calibration.json"), "student": ("distill", "calibration.json")}
NOTEBOOKS = {stage: notebook for stage, (notebook, _) in STAGES.items()}
DONE_MARKERS = {stage: marker for stage, (_, marker) in STAGES.items()}
# the folders of run folders made before the stages' folders took the stages' names: such a run is refused
OLD_FOLDERS = {"tokenized": "tokenize", "eval": "evaluate"}
FAILURE_FILE = "failure.json"  # written by the runner when a notebook fails: which one, and its error
ESTIMATES_FILE = "estimates.json"  # helpers.pipeline.estimates: each stage's estimated seconds, written before the stage runs
