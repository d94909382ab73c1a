"""helpers.predict on a finished smoke run and its export: every input format, bad rows, calibration,
a kill mid-run, and the ONNX path with torch's import blocked."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from helpers.core.files import PROJECT_ROOT
from helpers.serve import score_files

pytest.importorskip("onnxruntime", reason="the export extra: pip install -e .[export]")

SHIPPED = PROJECT_ROOT / "helpers" / "data" / "sample_data" / "my_reviews.csv"
# runs helpers.predict with every import of torch refused, and says whether torch was imported all the same
NO_TORCH = """
import runpy, sys
class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test: " + name)
sys.meta_path.insert(0, RefuseTorch())
sys.argv = ["helpers.predict"] + sys.argv[1:]
try:
    runpy.run_module("helpers.predict", run_name="__main__")
finally:
    print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def _reviews():
    return pd.read_csv(SHIPPED)


def _run(argv, capsys):
    """helpers.predict in this process: (its summary, what it printed on standard output and error)."""
    totals = score_files.main([*argv, "--quiet"])
    captured = capsys.readouterr()
    return totals, captured.out, captured.err


def test_every_input_format_gives_the_same_scores_and_keeps_the_columns(smoke_export_dir, tmp_path, capsys):
    reviews = _reviews().assign(review_id=lambda f: np.arange(len(f)) * 7)
    inputs = {"parquet": tmp_path / "in.parquet", "csv": tmp_path / "in.csv", "jsonl": tmp_path / "in.jsonl",
              "txt": tmp_path / "in.txt"}
    reviews.to_parquet(inputs["parquet"], index=False)
    reviews.to_csv(inputs["csv"], index=False)
    reviews.to_json(inputs["jsonl"], orient="records", lines=True)
    inputs["txt"].write_text("\n".join(reviews["text"]) + "\n")
    scored = {}
    for kind, path in inputs.items():
        out = tmp_path / f"out_{kind}.parquet"
        totals, stdout, err = _run([str(smoke_export_dir), str(path), "--out", str(out)], capsys)
        scored[kind] = pd.read_parquet(out)
        assert totals["scored"] == len(reviews) and stdout == ""
        assert ("accuracy on the 12 labelled reviews" in err) == (kind != "txt")  # a text file has no labels
    for kind, frame in scored.items():
        expected = ["text", "predicted", "p_positive"] if kind == "txt" else [*reviews.columns, "predicted", "p_positive"]
        assert list(frame.columns) == expected
        assert frame["text"].tolist() == reviews["text"].tolist()
        assert set(frame["predicted"]) <= {"NEGATIVE", "POSITIVE"}
        assert (frame["predicted"] == np.where(frame["p_positive"] >= 0.5, "POSITIVE", "NEGATIVE")).all()
        np.testing.assert_allclose(frame["p_positive"], scored["parquet"]["p_positive"], rtol=0, atol=1e-12)
    assert scored["parquet"]["review_id"].tolist() == reviews["review_id"].tolist()
    correct = ((scored["csv"]["p_positive"] >= 0.5).astype(int) == reviews["label"]).mean()
    _, _, err = _run([str(smoke_export_dir), str(inputs["csv"]), "--out", str(tmp_path / "again.csv")], capsys)
    assert f"accuracy on the 12 labelled reviews: {correct:.4f}" in err
    assert pd.read_csv(tmp_path / "again.csv")["p_positive"].tolist() == pytest.approx(scored["csv"]["p_positive"].tolist())


def test_bad_rows_are_named_skipped_and_kept_or_refused_with_strict(smoke_export_dir, tmp_path, capsys):
    frame = pd.DataFrame({"review": ["A fine film.", "", "   ", None, 42, "Awful."], "stars": [5, 1, 2, 3, 4, 1]})
    source = tmp_path / "mixed.jsonl"
    frame.to_json(source, orient="records", lines=True)
    out = tmp_path / "scored.csv"
    totals, _, err = _run([str(smoke_export_dir), str(source), "--text-column", "review", "--out", str(out)], capsys)
    assert totals["scored"] == 2 and totals["bad_rows"] == [1, 2, 3, 4]
    assert "skipped 4 row(s) with no text to score" in err and "rows 1, 2, 3, 4" in err
    written = pd.read_csv(out)
    assert len(written) == 6 and written["predicted"].isna().tolist() == [False, True, True, True, True, False]

    strict = tmp_path / "strict.csv"
    with pytest.raises(SystemExit, match=r"row 1 has no text to score"):
        score_files.main([str(smoke_export_dir), str(source), "--text-column", "review", "--out", str(strict), "--strict"])
    assert not strict.exists() and not list(tmp_path.glob(".strict.csv*"))  # written whole or not at all
    with pytest.raises(SystemExit, match=r"no 'text' column \(columns \['review', 'stars'\]\); name the review column"):
        score_files.main([str(smoke_export_dir), str(source)])


def test_the_onnx_path_reads_standard_input_without_importing_torch(smoke_export_dir):
    text = "\n".join(_reviews()["text"][:5]) + "\n"
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(smoke_export_dir), "-", "--model", "int8", "--quiet"],
                            input=text, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stderr
    written = pd.read_csv(pd.io.common.StringIO(result.stdout))  # CSV on standard output, nothing else there
    assert list(written.columns) == ["text", "predicted", "p_positive"] and len(written) == 5


def test_both_backends_answer_one_interface_with_the_same_probabilities_and_labels():
    import inspect

    from helpers.core import sentiment
    from helpers.serve import onnx_backend
    from helpers.serve.classifier import Classifier
    from helpers.serve.torch_backend import TorchClassifier

    backends = {"torch": TorchClassifier(None, None, 1.0, 64, 1.0, batch_size=7),
                "onnx": onnx_backend.ExportedClassifier(None, None, {"batch_size": 7})}
    for method in ("load", "logits"):  # the same methods, called the same way
        assert len({str(inspect.signature(getattr(type(b), method))) for b in backends.values()}) == 1
    logits = np.random.default_rng(0).normal(0, 4, (50, 2)).astype(np.float32)
    for backend in backends.values():
        assert isinstance(backend, Classifier) and backend.batch_size == 7 and backend.engine
        assert backend.label_names == {0: "NEGATIVE", 1: "POSITIVE"}
        np.testing.assert_array_equal(backend.positive_probability(logits), sentiment.positive_probability(logits))
    with pytest.raises(TypeError, match="abstract"):  # a backend without logits is refused, not half-served
        type("NoLogits", (Classifier,), {"load": classmethod(lambda cls, folder, model="student", threads=None: None)})()


def test_the_onnx_batches_are_padded_as_the_torch_loaders_pad(tiny_tokenizer):
    from datasets import Dataset

    from helpers.core.padding import padded_length
    from helpers.serve import onnx_backend
    from helpers.train.batching import make_loader

    assert padded_length(np.array([1, 8, 9, 16, 17])).tolist() == [8, 8, 16, 16, 24] and padded_length(8.5) == 16
    for lengths in ([3], [8], [9, 2], [17, 16, 1]):
        ids = [list(range(5, 5 + n)) for n in lengths]
        dataset = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths],
                                     "labels": [0] * len(ids)})
        on_torch = next(iter(make_loader(dataset, tiny_tokenizer, len(ids))))
        on_onnx = onnx_backend.padded_batch(ids, tiny_tokenizer.pad_token_id)
        assert on_onnx["input_ids"].shape == (len(ids), padded_length(max(lengths)))
        for name in ("input_ids", "attention_mask"):
            np.testing.assert_array_equal(on_onnx[name], on_torch[name].numpy())


def test_a_run_folder_and_its_export_score_alike_head_and_tail_cut_the_same(smoke_run_dir, smoke_export_dir):
    from helpers.serve import onnx_backend
    from helpers.serve.torch_backend import TorchClassifier
    from helpers.tokens import tokens

    texts = _reviews()["text"].tolist() + [" ".join(["a long review that goes on"] * 40)]
    torch_side = TorchClassifier.load(smoke_run_dir, "student")
    onnx_side = onnx_backend.ExportedClassifier.load(smoke_export_dir, "student")
    np.testing.assert_allclose(onnx_side.logits(texts, 4), torch_side.logits(texts, 4), atol=1e-4)
    onnx_side.serving = {**onnx_side.serving, "truncation_head": 0.25}  # head+tail, as quick cuts
    expected = tokens.tokenize_splits({"t": pd.DataFrame({"text": texts, "label": 0})}, torch_side.tokenizer,
                                      onnx_side.serving["max_length"], 0.25)["t"]["input_ids"]
    assert onnx_side.token_ids(texts) == expected and len(expected[-1]) == onnx_side.serving["max_length"]


def test_probabilities_are_calibrated_whether_or_not_the_model_holds_the_temperature(smoke_run_dir, tmp_path):
    """The distill stage saves its student raw, its temperature in distill/calibration.json; a model holding the
    temperature in its classifier (as an exported copy does) gives the same calibrated probabilities."""
    from helpers.core import models
    from helpers.evaluate import calibration
    from helpers.serve.torch_backend import TorchClassifier

    folded_run = tmp_path / "folded_run"
    shutil.copytree(smoke_run_dir / "tokenize", folded_run / "tokenize")
    (folded_run / "distill").mkdir()
    for part in ("params.json", "distill/calibration.json"):
        shutil.copy(smoke_run_dir / part, folded_run / part)
    saved = models.load_trained(smoke_run_dir / "distill" / "model")
    temperature = json.loads((smoke_run_dir / "distill" / "calibration.json").read_text())["temperature"]
    assert calibration.recorded_temperature(saved.config) == 1.0  # raw, as trained
    calibration.fold_temperature(saved, temperature).save_pretrained(folded_run / "distill" / "model")
    texts = _reviews()["text"].tolist()
    as_saved, as_folded = (TorchClassifier.load(folder, "student") for folder in (smoke_run_dir, folded_run))
    assert as_saved.scale == pytest.approx(1 / temperature) and as_folded.scale == pytest.approx(1.0)
    np.testing.assert_allclose(as_folded.logits(texts, 4), as_saved.logits(texts, 4), rtol=1e-4, atol=1e-6)


def test_a_kill_mid_run_leaves_no_output_file(smoke_export_dir, tmp_path):
    source = tmp_path / "many.txt"
    source.write_text("A fine film with a plot that holds together until the very end.\n" * 40_000)
    out = tmp_path / "scored.parquet"
    process = subprocess.Popen([sys.executable, "-m", "helpers.predict", str(smoke_export_dir), str(source),
                                "--out", str(out), "--quiet"], cwd=PROJECT_ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".scored.parquet.*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be killed: give it more reviews"
    time.sleep(0.3)  # some chunks written to the temporary file
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode != 0
    assert not out.exists() and not list(tmp_path.glob(".scored.parquet.*"))
