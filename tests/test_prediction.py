"""One prediction path (helpers.train.prediction): every prediction of a PyTorch model goes through one function."""
import ast
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers
from helpers.core import sentiment
from helpers.core.accelerators import make_accelerator, plain_model
from helpers.runs.config import resolve_params
from helpers.tokens import tokens
from helpers.train import prediction
from helpers.train.batching import make_loader
from helpers.train.trainer import TrainSettings

PACKAGE = Path(helpers.__file__).parent
MODULES = {".".join(path.relative_to(PACKAGE).with_suffix("").parts): path for path in PACKAGE.rglob("*.py")}
MODEL_NAMES = {"model", "teacher", "student", "prepared", "int8", "wrapped"}  # what the package calls a model it holds


def model_calls(modules):
    """{(module, function): [what it calls]} for every call of a model (a name in MODEL_NAMES or an attribute
    `model` called, or anything called with input_ids) and every call of prediction.forward, by the function
    (or method) around it."""
    found = {}
    for name, path in modules.items():
        def visit(node, where):
            for child in ast.iter_child_nodes(node):
                inner = where
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = f"{where}.{child.name}" if where else child.name
                if isinstance(child, ast.Call):
                    func = child.func
                    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                    a_model = (isinstance(func, ast.Name) and called in MODEL_NAMES) or called == "model"  # model(...), self.model(...)
                    if called == "forward" or a_model or any(k.arg == "input_ids" for k in child.keywords):
                        found.setdefault((name, where), []).append("forward" if called == "forward" else "the model")
                visit(child, inner)
        visit(ast.parse(path.read_text()), "")
    return found


def test_one_function_calls_the_models_forward_pass_to_predict():
    calls = model_calls(MODULES)
    assert calls == {("train.prediction", "forward"): ["the model"],  # the one call of the model itself
                     ("train.prediction", "batches_logits"): ["forward", "forward"],  # every prediction
                     ("train.stepper", "Stepper.step"): ["forward"]}  # training's loss


def test_the_callers_check_finds_a_model_called_its_own_way(tmp_path):
    """The check above can fail: a view that calls the model directly is caught."""
    (tmp_path / "views.py").write_text("def logits(model, batch):\n    return model(input_ids=batch['input_ids']).logits\n"
                                       "def other(model, batch):\n    return prediction.forward(model, batch)\n")
    assert model_calls({"views": tmp_path / "views.py"}) == {("views", "logits"): ["the model"],
                                                             ("views", "other"): ["forward"]}


@pytest.fixture
def reviews(tiny_tokenizer, sample):
    return tokens.tokenize_splits({"test": sample["test"].head(24)}, tiny_tokenizer, 128)["test"]


def test_predictions_come_back_in_input_order(tiny_teacher, tiny_tokenizer, reviews):
    accelerator = make_accelerator(TrainSettings.from_params(resolve_params("smoke", {"eval_batch_size": 5})))
    batched = prediction.predict_sets(tiny_teacher, {"all": reviews}, tiny_tokenizer, 5, accelerator)["all"]
    one_by_one = [prediction.predict_sets(tiny_teacher, {"one": reviews.select([i])}, tiny_tokenizer, 5, accelerator)["one"][0]
                  for i in (0, 7, 23)]
    np.testing.assert_allclose(batched[[0, 7, 23]], one_by_one, atol=1e-5)
    assert batched.shape == (24, 2)
    assert "_original_forward" not in tiny_teacher.__dict__  # the model comes back plain


def test_one_batch_and_a_whole_dataset_give_the_same_logits(tiny_teacher, tiny_tokenizer, reviews):
    whole = prediction.predict_logits(tiny_teacher, reviews, tiny_tokenizer, 8)
    batch = next(iter(make_loader(reviews, tiny_tokenizer, len(reviews))))
    one_batch = prediction.batch_logits(tiny_teacher, batch)
    assert one_batch.dtype == torch.float32 and one_batch.device.type == "cpu"
    np.testing.assert_allclose(one_batch.numpy(), whole, atol=1e-5)


def test_the_timed_cpu_logits_are_the_logits_and_take_time(tiny_teacher, tiny_tokenizer, reviews):
    logits, seconds = prediction.timed_cpu_logits(tiny_teacher, reviews, tiny_tokenizer, 8)
    assert seconds > 0
    np.testing.assert_allclose(logits, prediction.predict_logits(tiny_teacher, reviews, tiny_tokenizer, 8), atol=1e-6)


def test_a_temperature_divides_the_logits_before_the_softmax():
    logits = np.array([[0.0, 2.0], [1.0, -1.0]], dtype=np.float32)
    assert sentiment.positive_probability(logits, 2.0) == pytest.approx(sentiment.positive_probability(logits / 2.0))
    assert sentiment.positive_probability(logits) == pytest.approx([1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(2.0))])


def test_every_prediction_on_a_bf16_accelerator_runs_in_bf16_even_after_the_model_left_a_loop(tiny_teacher,
                                                                                             tiny_tokenizer, reviews):
    """Accelerate hands back a model it prepared once unchanged, without autocast, once the model has left a
    loop (plain_model): predicting by preparing the model ran every set after the first in fp32."""
    settings = TrainSettings.from_params(resolve_params("smoke", {"precision": "bf16"}))
    accelerator = make_accelerator(settings)
    dtypes = []
    tiny_teacher.classifier.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    plain_model(accelerator.prepare(tiny_teacher))  # as a training loop leaves it
    first = prediction.predict_sets(tiny_teacher, {"a": reviews, "b": reviews}, tiny_tokenizer, 8, accelerator)
    again = prediction.predict_sets(tiny_teacher, {"a": reviews}, tiny_tokenizer, 8, accelerator)
    assert set(dtypes) == {torch.bfloat16} and len(dtypes) == 3 * 3  # 24 reviews in 3 batches, three times
    np.testing.assert_array_equal(first["a"], first["b"])
    np.testing.assert_array_equal(first["a"], again["a"])
    fp32 = prediction.predict_logits(tiny_teacher, reviews, tiny_tokenizer, 8)  # no accelerator: the model's own
    assert dtypes[-1] == torch.float32 and np.abs(fp32 - first["a"]).max() > 0
    assert "_original_forward" not in tiny_teacher.__dict__  # the model is never left wrapped


def test_a_timed_pass_comes_after_one_untimed_batch_of_the_same_shapes(tiny_teacher, tiny_tokenizer, reviews):
    from helpers.core.timing import warmed_timing

    calls = []

    def slow_first(inputs):  # a model whose first call pays for its set-up
        calls.append(len(inputs))
        time.sleep(0.5 if len(calls) == 1 else 0.0)
        return sum(inputs)

    assert warmed_timing(slow_first, [1, 2, 3], [1])[0] == 6 and calls == [1, 3]
    assert warmed_timing(slow_first, [1], [1])[1] < 0.4
    shapes = []
    tiny_teacher.register_forward_hook(lambda module, args, kwargs, out: shapes.append(tuple(kwargs["input_ids"].shape)),
                                       with_kwargs=True)
    prediction.timed_cpu_logits(tiny_teacher, reviews, tiny_tokenizer, 4)
    timed = shapes[1:]
    assert len(timed) == -(-len(reviews) // 4) and shapes[0] == (4, max(length for _, length in timed))
