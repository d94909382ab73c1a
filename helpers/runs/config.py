"""The pipeline's parameters: one typed, validated set, filled from a profile (`profiles/*.yaml`) and overrides.

Overrides (papermill `-p NAME VALUE`, a notebook's `overrides` dict) win over the profile. Values arrive as YAML
scalars or command-line strings and are coerced to each field's type here, so nothing downstream ever sees an
unchecked value and nothing is evaluated as code.
"""
import dataclasses
import math
import typing
from dataclasses import dataclass, field

import yaml

from helpers.core.errors import ConfigError
from helpers.core.files import PROJECT_ROOT

PROFILE_DIR = PROJECT_ROOT / "profiles"

HEADS = ("pooler", "cls")
SCHEDULES = ("linear", "constant")  # what the learning rate does after warmup (transformers.get_scheduler)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "none")  # Accelerate's names
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _p(default, help, min=None, max=None, choices=None):
    return field(default=default, metadata=dict(help=help, min=min, max=max, choices=choices))


@dataclass(frozen=True)
class Params:
    # data
    data: str = _p("sample", "'sample' (committed IMDB sample), a hub dataset name, or a local folder")
    n_train: typing.Optional[int] = _p(None, "training reviews drawn (stratified) before the validation split; none = all", min=4)
    n_test: typing.Optional[int] = _p(None, "test reviews drawn (stratified); none = all", min=2)
    val_fraction: float = _p(0.1, "share of the training reviews held out for validation", min=0.01, max=0.5)
    # tokenizer and teacher
    model: str = _p("minilm-l6", "'minilm-l6' (offline), 'tiny-random-bert' (tests), a hub name or a local folder")
    max_length: int = _p(256, "tokens kept per review (longer reviews are truncated)", min=8)
    truncation_head: float = _p(1.0, "share of max_length taken from the start of a long review, the rest from its end (1.0: plain truncation; 0.25: head+tail, Sun et al. 2019)", min=0.0, max=1.0)
    head: str = _p("pooler", "classification head of a BERT teacher: 'pooler' (BERT's own: tanh pooler on [CLS], then a linear layer) or 'cls' (the [CLS] state read directly by a fresh dense+GELU layer, no tanh pooler; saved as transformers' ElectraForSequenceClassification, whose encoder is BERT's: helpers/core/models.py)", choices=HEADS)
    attention_dropout: float = _p(0.0, "dropout on attention weights while fine-tuning (BERT pre-trained with 0.1; 0 lets PyTorch's fused attention kernel run, which is faster: docs/results.md)", min=0.0, max=0.9)
    # training (teacher)
    epochs: int = _p(1, "passes over the training reviews", min=1, max=100)
    batch_size: int = _p(16, "reviews per optimizer step and device, before gradient accumulation", min=1)
    grad_accum_steps: int = _p(1, "batches whose gradients are summed before each optimizer step", min=1)
    min_steps: int = _p(0, "fewest optimizer steps: small training sets get extra epochs until they reach it (validation still picks the best epoch)", min=0)
    lr: float = _p(1e-4, "peak learning rate of AdamW", min=1e-7, max=1.0)
    layer_decay: float = _p(1.0, "layer-wise learning-rate decay: each layer below the head learns at this times the rate of the one above (1.0: one rate for all)", min=0.1, max=1.0)
    weight_decay: float = _p(0.01, "AdamW weight decay (never on biases and LayerNorm)", min=0.0, max=1.0)
    warmup_ratio: float = _p(0.1, "share of optimizer steps spent warming the learning rate up", min=0.0, max=0.5)
    lr_schedule: str = _p("linear", "the learning rate after warmup: 'linear' decays it to 0 at the last step (BERT's recipe), 'constant' keeps it at lr (docs/recipe.md compares them)", choices=SCHEDULES)
    max_grad_norm: float = _p(1.0, "gradient clipping threshold", min=0.0)
    precision: str = _p("auto", "'auto' picks from the device (the table in helpers/core/precision.py: bf16 on GPUs with compute capability 8.0+, fp16 below, bf16 on CPUs whose bf16 instructions time faster, else fp32); or force fp32, bf16 or fp16 (fp16 on a CPU: a slow emulation of a T4's, for checking)", choices=PRECISIONS)
    compile: bool = _p(False, "torch.compile the model for training (dynamic shapes); meant for GPUs, where fused kernels can pay off (on a CPU compiling costs minutes and gained nothing: docs/results.md)")
    group_by_length: bool = _p(True, "batch reviews of similar length together, so less of each batch is padding (helpers/train/batching.py)")
    tracker: str = _p("tensorboard", "experiment tracker (through Accelerate) that logs training loss, learning rate and validation metrics into each training stage's folder; 'none' logs nothing", choices=TRACKERS)
    eval_batch_size: int = _p(64, "reviews per batch when predicting", min=1)
    checkpoint_minutes: float = _p(20.0, "minutes of training between checkpoints, from which a rerun resumes after a disconnect: one is written at the first step or epoch end once this many minutes have passed since the stage began or since the last checkpoint, none after the last epoch (the model is saved instead). 20 bounds what a Colab disconnect loses to about 20 minutes of training, while a checkpoint (the weights and AdamW's two moments: three times the model, 1.3 GB for bert-base) is written seldom enough that writing it to Drive takes a small share of the time; a stage shorter than that writes none", min=0.1)
    checkpoint_every: int = _p(0, "optimizer steps between checkpoints, replacing checkpoint_minutes when above 0 (then a checkpoint also follows every epoch but the last): for tests and runs that want checkpoints at known steps", min=0)
    keep_checkpoints: int = _p(2, "newest checkpoints kept while a stage trains (the one written with the best model is kept as well)", min=1)
    keep_checkpoints_at_end: bool = _p(False, "keep a stage's checkpoints once it has finished; by default they are deleted then, since they only serve to resume an unfinished stage (and on Google Drive they count against the quota), so a finished stage run again trains afresh from its inputs")
    # distillation (student)
    student_model: str = _p("distil-from-teacher", "'distil-from-teacher' (DistilBERT from every other teacher layer), a hub name or a local folder")
    student_epochs: int = _p(1, "passes over the training reviews for the student", min=1, max=100)
    student_lr: float = _p(1e-4, "peak learning rate for the student", min=1e-7, max=1.0)
    temperature: float = _p(2.0, "softmax temperature of the distillation loss", min=0.1, max=100.0)
    alpha: float = _p(0.5, "weight of the hard-label cross-entropy; 1 - alpha goes to the teacher's soft labels", min=0.0, max=1.0)
    unlabelled: str = _p("sample", "unlabelled reviews the teacher labels for the student to learn from too: 'sample' (IMDB's unsupervised split, a slice shipped with the project), a Parquet/CSV file with a text column, or a hub dataset name with an 'unsupervised' split (helpers/data/unlabelled.py)")
    n_unlabelled: typing.Optional[int] = _p(0, "unlabelled reviews drawn (seeded) for distillation; 0 = none, none = all", min=0)
    # reporting
    extra_test: str = _p("", "extra labelled test sets scored by every model, comma-separated: 'short' (1,000 single IMDB sentences shipped with the project) or Parquet/CSV files with text and label columns (helpers/data/extra_sets.py)")
    n_errors: int = _p(10, "most confidently wrong test reviews shown", min=0)
    n_cpu_test: typing.Optional[int] = _p(2000, "test reviews (a seeded sample; all when fewer; none = all) the int8 student is scored on, on the CPU; the teacher and student are scored on the same ones too, so ratios compare like with like", min=2)
    n_speed: int = _p(256, "reviews of that sample timed on the CPU for each model's throughput", min=1)
    seed: int = _p(42, "seed for sampling, shuffling and initialisation", min=0)

    def to_dict(self):
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Params)}
# when checkpoints are written and which are kept, never what is trained: they stay out of the checkpoint
# fingerprint and the run folder's name, and a run folder takes new values of them without refusing
CHECKPOINT_FIELDS = ("checkpoint_minutes", "checkpoint_every", "keep_checkpoints", "keep_checkpoints_at_end")
_TYPES = typing.get_type_hints(Params)


def _coerce(name, value):
    """Turn a YAML scalar or command-line string into the field's type, or raise ConfigError."""
    kind = _TYPES[name]
    optional = typing.get_origin(kind) is typing.Union
    base = typing.get_args(kind)[0] if optional else kind
    word = value.strip().lower() if isinstance(value, str) else None
    if optional and (value is None or word in ("none", "null", "")):
        return None
    try:
        if base is bool and (isinstance(value, bool) or word in _BOOL_WORDS):
            return value if isinstance(value, bool) else _BOOL_WORDS[word]
        if base is str and isinstance(value, str):
            return value
        if base is int and not isinstance(value, bool):
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, (int, float)) and float(number).is_integer():
                return int(number)
        if base is float and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
    except (TypeError, ValueError):
        pass
    expected = base.__name__ + (" or none" if optional else "")
    raise ConfigError(f"parameter {name!r}: expected {expected}, got {value!r}")


def make_params(values):
    """Validate a mapping of parameter names to raw values and build Params from it."""
    if unknown := sorted(set(values) - set(FIELDS)):
        raise ConfigError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; known: {', '.join(FIELDS)}")
    coerced = {name: _coerce(name, value) for name, value in values.items()}
    for name, value in coerced.items():
        meta = FIELDS[name].metadata
        if value is not None and meta["choices"] and value not in meta["choices"]:
            raise ConfigError(f"parameter {name!r}: {value!r} is not one of {', '.join(meta['choices'])}")
        if value is not None and meta["min"] is not None and value < meta["min"]:
            raise ConfigError(f"parameter {name!r}: {value!r} is below the minimum {meta['min']} ({meta['help']})")
        if value is not None and meta["max"] is not None and value > meta["max"]:
            raise ConfigError(f"parameter {name!r}: {value!r} is above the maximum {meta['max']} ({meta['help']})")
    return Params(**coerced)


def available_profiles():
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def read_profile(name):
    """The raw mapping of a named profile, without its `description`."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(available_profiles())}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"profile {path} must be a mapping of parameter names to values")
    values.pop("description", None)
    return values


def resolve_params(profile, overrides=None):
    """Params of `profile` with `overrides` applied on top; every value validated."""
    values = {**read_profile(profile), **(overrides or {})}
    try:
        return make_params(values)
    except ConfigError as error:
        raise ConfigError(f"{error} (profile {profile!r})") from None


def describe_params():
    """One line per parameter: name, default and meaning (for --help and the README)."""
    return [f"{name} (default {f.default!r}): {f.metadata['help']}" for name, f in FIELDS.items()]
