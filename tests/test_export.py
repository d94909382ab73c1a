"""helpers.export on a finished smoke run: checked ONNX copies with the fusions, the model card, the refusals."""
import json

import numpy as np
import pytest
import yaml

from helpers.runs import layout
from helpers.serve import export, onnx_backend

pytest.importorskip("onnxruntime", reason="the export extra: pip install -e .[export]")


def test_the_export_holds_checked_fused_copies_with_dynamic_axes(smoke_export_dir):
    serving = json.loads((smoke_export_dir / "serving.json").read_text())
    assert set(serving["files"]) == {"student", "int8", "teacher"}
    for who in ("student", "teacher"):
        assert 0 <= serving["check"][who]["max_abs_logit_diff"] <= export.MAX_LOGIT_DIFF
        fused = serving["fusions"][who]  # the graph as exported is the one the optimizer recognises
        assert fused.get("Attention", 0) > 0 and fused.get("SkipLayerNormalization", 0) > 0
        assert fused.get("BiasGelu", 0) + fused.get("Gelu", 0) + fused.get("FastGelu", 0) > 0
    assert (smoke_export_dir / "tokenizer.json").is_file() and serving["max_length"] == 64
    student = onnx_backend.ExportedClassifier.load(smoke_export_dir, "student")
    ids = student.token_ids(["good", "a much longer review of a film that somebody did not enjoy at all, sadly"])
    together = onnx_backend.session_logits(student.session, ids, serving["pad_token_id"], batch_size=2)
    alone = np.concatenate([onnx_backend.session_logits(student.session, [i], serving["pad_token_id"], 1) for i in ids])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # batch and sequence axes are dynamic, padding masked


def test_the_model_card_says_what_the_model_is_and_where_it_fails(smoke_run_dir, smoke_export_dir):
    card = (smoke_export_dir / "README.md").read_text()
    _, front, text = card.split("---\n", 2)
    metadata = yaml.safe_load(front)
    assert metadata["license"] == "apache-2.0" and metadata["language"] == "en"
    assert metadata["pipeline_tag"] == "text-classification" and metadata["datasets"] == ["stanfordnlp/imdb"]
    assert metadata["metrics"] == ["accuracy"]
    metrics = json.loads((smoke_run_dir / "distill" / "metrics.json").read_text())
    low, high = metrics["accuracy_ci95"]
    assert f"Test accuracy {metrics['accuracy']:.3f} (95% interval {low:.3f}-{high:.3f})" in text
    comparison = json.loads((smoke_run_dir / "distill" / "comparison.json").read_text())
    baseline = comparison["models"]["baseline"]["test"]["accuracy"]
    short = comparison["extra_test_sets"]["short"]["models"]["student"]["test"]["accuracy"]
    assert f"| baseline | {baseline:.3f}" in text and f"its accuracy is {short:.3f}" in text
    assert "Large Movie Review Dataset (Maas et al. 2011" in text and "python -m helpers.run smoke" in text
    for heading in ("## Data", "## How it was made", "## Results", "## Calibration", "## Known limits",
                    "## Intended use"):
        assert heading in text
    fitted = json.loads((smoke_run_dir / "distill" / "calibration.json").read_text())
    assert f"T = {fitted['temperature']:.3f}" in text and f"{fitted['ece']:.3f} (95% interval" in text
    assert ("with a calibrated probability" in text) == (fitted["nll"] < fitted["nll_uncalibrated"])


def test_the_export_reuses_the_distill_stages_onnx_copies(smoke_run_dir, tmp_path, monkeypatch):
    """The distill stage wrote the student's copies for its comparison; exporting the run does not export it again."""
    made = smoke_run_dir / layout.STUDENT_ONNX
    record = json.loads((made / export.COPIES_FILE).read_text())
    monkeypatch.setattr(export, "onnx_copies", lambda *args, **kwargs: pytest.fail("the student was exported again"))
    serving = export.export_run(smoke_run_dir, tmp_path / "export")
    assert serving["fusions"]["student"] == record["fusions"]
    for name in record["files"].values():
        assert (tmp_path / "export" / name).read_bytes() == (made / name).read_bytes()
    assert serving["check"]["student"]["max_abs_logit_diff"] <= export.MAX_LOGIT_DIFF  # checked all the same


def test_an_export_that_disagrees_with_pytorch_is_refused_and_writes_nothing(smoke_run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_LOGIT_DIFF", -1.0)  # no difference passes: the check must refuse
    out = tmp_path / "export"
    with pytest.raises(RuntimeError, match=r"gives logits up to .* away from PyTorch's"):
        export.export_run(smoke_run_dir, out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_push_to_hub_offline_fails_before_exporting_or_uploading(smoke_run_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 sets it (conftest does)
    monkeypatch.setattr(export, "push_to_hub", lambda *args: pytest.fail("an upload was attempted"))
    out = tmp_path / "export"
    with pytest.raises(SystemExit, match=r"HF_HUB_OFFLINE is set\); nothing was uploaded"):
        export.main([str(smoke_run_dir), "--out", str(out), "--push-to-hub", "someone/imdb-student"])
    assert not out.exists()
