"""The run folder's file names, relative to the run folder, in one table: renamed or added in one place.

Each stage writes into the folder of its own name; docs/run_folder.md shows the tree.
"""
# the run folder's own files
PARAMS_FILE = "params.json"  # the profile and the resolved parameters: the run's single source of truth
ENVIRONMENT_FILE = "environment.json"  # library versions, git commit, device
TIMINGS_FILE = "timings.json"  # seconds per executed notebook (the batch runner)
ESTIMATES_FILE = "estimates.json"  # each stage's estimated seconds, written before the stage runs
FAILURE_FILE = "failure.json"  # written by the runner when a notebook fails: which one, and its error
REPORT_FILE = "report.html"
NOTEBOOKS_FOLDER = "notebooks"  # the executed notebooks of a batch run

# each stage's files
SPLITS_SUMMARY = "data/summary.json"
UNLABELLED_REVIEWS = "data/unlabelled.parquet"
LENGTH_STATS = "tokenize/length_stats.json"
TEACHER_HISTORY = "train/history.json"
TEACHER_MODEL = "train/model"
TEACHER_METRICS = "evaluate/metrics.json"
TEST_SET_SCORES = "evaluate/test_sets.json"
PAIRED = "evaluate/paired.json"  # paired differences of the models scored on the same reviews
PREDICTIONS = "evaluate/predictions.parquet"
PROBABILITIES = "evaluate/probabilities.parquet"
CONFIDENT_ERRORS = "evaluate/confident_errors.csv"
BASELINE = "evaluate/baseline.json"
TEACHER_CALIBRATION = "evaluate/calibration.json"
STUDENT_HISTORY = "distill/history.json"
STUDENT_MODEL = "distill/model"
STUDENT_METRICS = "distill/metrics.json"
STUDENT_CALIBRATION = "distill/calibration.json"
COMPARISON = "distill/comparison.json"
STUDENT_ONNX = "distill/onnx"  # the student's ONNX copies, timed by the comparison and reused by the export
FIGURES = {"label_balance": "data/label_balance.png", "review_words": "data/review_words.png",
           "token_lengths": "tokenize/token_lengths.png", "loss_curve": "train/loss_curve.png",
           "confusion_matrix": "evaluate/confusion_matrix.png", "reliability": "evaluate/reliability.png",
           "student_loss_curve": "distill/student_loss_curve.png"}

# stage -> (its notebook, the file it writes last: there, it has finished)
STAGES = {"data": ("01_data.ipynb", SPLITS_SUMMARY), "tokenize": ("02_tokenize.ipynb", LENGTH_STATS),
          "train": ("03_train.ipynb", TEACHER_HISTORY), "evaluate": ("04_evaluate.ipynb", TEACHER_METRICS),
          "distill": ("05_distill.ipynb", COMPARISON)}
# the raw model each training stage saves, and the calibration temperature fitted for it
MODEL_FOLDERS = {"teacher": TEACHER_MODEL, "student": STUDENT_MODEL}
CALIBRATION_FILES = {"teacher": TEACHER_CALIBRATION, "student": STUDENT_CALIBRATION}
NOTEBOOKS = {stage: notebook for stage, (notebook, _) in STAGES.items()}
DONE_MARKERS = {stage: marker for stage, (_, marker) in STAGES.items()}
# the folders of run folders made before the stages' folders took the stages' names: such a run is refused
OLD_FOLDERS = {"tokenized": "tokenize", "eval": "evaluate"}
