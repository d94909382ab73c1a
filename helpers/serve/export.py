"""Export a finished run's student (and teacher) to ONNX, for serving without the project or torch.

    python -m helpers.export runs/quick                       # writes runs/quick/export/
    python -m helpers.export runs/quick --out my_model --teacher
    python -m helpers.export runs/quick --push-to-hub you/imdb-distilbert-int8

Per model: the ONNX graph (calibration folded in, checked against PyTorch), a fused copy and, for the student, its
int8 copy; the tokenizer, `serving.json`, a model card. TorchScript exporter: its attention is the one ORT fuses.
"""
import argparse
import copy
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from helpers.core.files import atomic_dir, read_json, remove_tree, write_json
from helpers.core.sentiment import PIPELINE_LABELS
from helpers.evaluate import calibration
from helpers.runs import layout
from helpers.runs.run_folder import load_run
from helpers.serve import onnx_backend
from helpers.serve.model_card import model_card
from helpers.tokens import tokens
from helpers.train import prediction

OPSET = 17
MAX_LOGIT_DIFF = 1e-3  # largest |ONNX - PyTorch| logit difference accepted
CHECK_REVIEWS = 64  # test reviews the exported graphs are checked on
INPUTS = ("input_ids", "attention_mask")
COPIES_FILE = "copies.json"  # in such a folder: {"files": {kind: file name}, "fusions": {operator: count}}


def calibrated_for_export(run, who):
    """The run's `who` model in fp32 with its calibration temperature folded in (calibration.load_with_temperature)."""
    return calibration.fold_temperature(*calibration.load_with_temperature(run, who)).eval()


def export_onnx(model, path):
    """`model` as ONNX at `path` (a copy: eager attention, the logits alone as a tuple), batch and sequence dynamic."""
    eager = copy.deepcopy(model).eval()
    eager.set_attn_implementation("eager")
    eager.config.return_dict = False
    example = torch.ones((2, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on transformers' mask code and on index ops: the check against PyTorch on reviews of
        # many lengths, padded, is what tells whether the graph is right
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*", category=DeprecationWarning)
        torch.onnx.export(eager, (example, example), str(path), dynamo=False, input_names=list(INPUTS),
                          output_names=["logits"], opset_version=OPSET, dynamic_axes={**axes, "logits": {0: "batch"}})
    return path


def optimize(path, out, config):
    """ONNX Runtime's fusions of `path` (opt_level 0: no hardware-specific rewrites), saved to `out`: {op: count}."""
    from onnxruntime.transformers import optimizer

    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    hidden = getattr(config, "hidden_size", None) or config.dim
    optimized = optimizer.optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    optimized.save_model_to_file(str(out))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


def quantize(path, out):
    """An int8 copy of an ONNX model (dynamic quantization). FLOAT as the default tensor type lets the quantizer past
    tensors whose type shape inference leaves open."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def onnx_copies(model, folder, name="student", int8=True):
    """`name`.onnx, its optimized copy and (with `int8`) that copy in int8, into `folder`: ({kind: file}, fusions)."""
    folder = Path(folder)
    files = {"onnx": f"{name}.onnx", "optimized": f"{name}.optimized.onnx"}
    export_onnx(model, folder / files["onnx"])
    fusions = optimize(folder / files["onnx"], folder / files["optimized"], model.config)
    if int8:
        files["int8"] = f"{name}.int8.onnx"
        quantize(folder / files["optimized"], folder / files["int8"])
    return files, fusions


def write_copies(model, folder):
    """onnx_copies of the student `model` into `folder`, with COPIES_FILE saying which file is which."""
    files, fusions = onnx_copies(model, folder)
    write_json(Path(folder) / COPIES_FILE, {"files": files, "fusions": fusions})


def student_copies(run):
    """The distill stage's ONNX copies of its calibrated student, written whole into distill/onnx/: its comparison
    times them and export_run reuses them, so a run exports its student once. Without the export extra installed,
    None, and no copies of an earlier student left (they would mislead export_run)."""
    folder = run.dir / layout.STUDENT_ONNX
    if not onnx_backend.installed():
        remove_tree(folder)
        return None
    with atomic_dir(folder) as tmp:
        write_copies(calibrated_for_export(run, "student"), tmp)
    return folder


def _reuse_or_export(run, model, folder, who):
    """(files, fusions) of the student's copies the distill stage wrote (linked, or copied where the file system has
    no links), or of a fresh export of `model` when it wrote none. export_run's check vouches for either."""
    made = run.dir / layout.STUDENT_ONNX
    if who != "student" or not (made / COPIES_FILE).is_file():
        return onnx_copies(model, folder, who, int8=who == "student")
    record = read_json(made / COPIES_FILE)
    for name in record["files"].values():
        try:
            os.link(made / name, folder / name)
        except OSError:
            shutil.copy2(made / name, folder / name)
    return record["files"], record["fusions"]


def export_run(run_dir, out=None, teacher=False):
    """Write a run's export folder (default RUN_DIR/export), whole or not at all; returns its serving.json."""
    run = load_run(run_dir)
    out = Path(out or run.dir / "export")
    tokenizer = tokens.load_saved_tokenizer(run.require("tokenize"))
    check_set = tokens.load_tokenized(run.require("tokenize"))["test"]
    check_set = check_set.select(range(min(CHECK_REVIEWS, len(check_set))))
    serving = {"max_length": run.params.max_length, "truncation_head": run.params.truncation_head,
               "pad_token_id": tokenizer.pad_token_id, "labels": PIPELINE_LABELS,
               "batch_size": run.params.eval_batch_size, "exporter": "torchscript", "opset": OPSET,
               "files": {}, "fusions": {}, "check": {}}
    with atomic_dir(out) as tmp:
        for who in ("student", "teacher") if teacher else ("student",):
            model = calibrated_for_export(run, who)
            files, serving["fusions"][who] = _reuse_or_export(run, model, tmp, who)
            batch_size = run.params.eval_batch_size
            expected = prediction.predict_logits(model, check_set, tokenizer, batch_size, desc="checking the export")
            worst = max(float(np.abs(logits - expected).max()) for logits in (  # the largest |ONNX - PyTorch| logit
                onnx_backend.session_logits(onnx_backend.make_session(tmp / files[kind]), check_set["input_ids"],
                                            tokenizer.pad_token_id, batch_size) for kind in ("onnx", "optimized")))
            print(f"{who}: largest |ONNX - PyTorch| logit difference on {len(check_set)} test reviews: {worst:.2e}")
            if not worst <= MAX_LOGIT_DIFF:
                raise RuntimeError(f"the exported {who} gives logits up to {worst:.2e} away from PyTorch's "
                                   f"(at most {MAX_LOGIT_DIFF} accepted); nothing was written to {out}")
            serving["check"][who] = {"reviews": len(check_set), "max_abs_logit_diff": worst,
                                     "temperature": calibration.recorded_temperature(model.config)}
            serving["files"].update({"student": files["optimized"], "int8": files["int8"]} if who == "student"
                                    else {"teacher": files["optimized"]})
        tokenizer.save_pretrained(tmp)
        write_json(tmp / onnx_backend.SERVING_FILE, serving)
        (tmp / "README.md").write_text(model_card(run, serving))  # tmp is renamed whole: no atomic write needed
    print(f"exported to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return serving


def check_can_push(repo):
    """Refuse, before any export or upload, a push that cannot work: offline, or no Hugging Face token."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise SystemExit(f"--push-to-hub {repo}: the Hugging Face hub is off (HF_HUB_OFFLINE is set); nothing was "
                         "uploaded. Unset HF_HUB_OFFLINE on a machine with internet, then push again")
    if "/" not in repo:
        raise SystemExit(f"--push-to-hub {repo!r}: give the repository as OWNER/NAME, e.g. you/imdb-distilbert")
    if get_token() is None:
        raise SystemExit(f"--push-to-hub {repo}: no Hugging Face token found; log in first (`hf auth login`, or set "
                         "HF_TOKEN); nothing was uploaded")


def push_to_hub(folder, repo):
    """Upload an export folder to a (new or existing) model repository on the hub; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                      commit_message="ONNX export of the distilled IMDB student (helpers.export)")
    return f"https://huggingface.co/{repo}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder whose distill stage has finished")
    parser.add_argument("--out", help="export folder (default RUN_DIR/export); replaced whole")
    parser.add_argument("--teacher", action="store_true", help="export the teacher too (fp32 and optimized)")
    parser.add_argument("--push-to-hub", metavar="OWNER/NAME", help="then upload the folder to this hub repository")
    args = parser.parse_args(argv)
    if args.push_to_hub:
        check_can_push(args.push_to_hub)
    for needed in (layout.PARAMS_FILE, layout.STUDENT_CALIBRATION):
        if not (Path(args.run_dir) / needed).is_file():
            raise SystemExit(f"{args.run_dir} has no {needed}: give a run folder whose distill stage has finished")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    export_run(args.run_dir, args.out, args.teacher)
    if args.push_to_hub:
        print(f"uploaded: {push_to_hub(args.out or Path(args.run_dir) / 'export', args.push_to_hub)}")


if __name__ == "__main__":
    sys.exit(main())
