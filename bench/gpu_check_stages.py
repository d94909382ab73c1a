"""bench/gpu_check.py's parts that run the pipeline's stages: fp16 and full-data.

Both call helpers.pipeline.stages' functions directly on a run folder opened with helpers.runs.run_folder.open_run, the
way the notebooks call them, without papermill (which the GPU image lacks).
"""
import contextlib
import inspect
import math
from unittest import mock

import torch

from helpers.core.files import read_json
from helpers.evaluate import baseline, scored_sets
from helpers.pipeline import stages
from helpers.pipeline.checks import open_run
from helpers.runs import layout

ALL_STAGES = tuple(stages.STAGE_FUNCTIONS)
TEACHER_STAGES = ALL_STAGES[:ALL_STAGES.index("evaluate") + 1]  # what the bf16 comparison run needs
# quick at tiny sizes for the dry run, in fp32 as the smoke profile (bf16 on a CPU builds kernels for each
# new batch shape: slow for a model this small); on a GPU, quick as it is, with MiniLM-L6 from the payload
DRY_RUN_QUICK = dict(model="tiny-random-bert", n_train=80, n_test=40, val_fraction=0.25, max_length=64, min_steps=0,
                     n_unlabelled=20, extra_test="", lr=1e-3, student_lr=1e-3, eval_batch_size=16, n_cpu_test=40,
                     n_speed=40, precision="fp32")
# full-data: all reviews at quick's 256 tokens, batches of 32 (the guide's 25,000-review MiniLM run: lr 1e-4, bs 32);
# the distill stage's CPU sample as the full profile sizes it
FULL_DATA = dict(n_train=None, batch_size=32, eval_batch_size=256, n_cpu_test=500, n_speed=64)
DRY_RUN_FULL_DATA = dict(DRY_RUN_QUICK, n_train=None, n_test=None, batch_size=8)
# 3 fits instead of the 7 of helpers.evaluate.baseline.C_GRID: on 22,500 reviews each fit takes long on one core,
# and with this much data the regularisation that wins is weak (a large C)
FULL_DATA_C_GRID = (10, 30, 100)


class ScaleRecorder:
    """Every GradScaler.update while the block runs: (scale before, scale after).

    With fp16, a step whose gradients hold inf or NaN is skipped by the scaler, which then halves the
    scale; no other update lowers it. So the skipped steps are the updates that lowered the scale."""

    def __enter__(self):
        self.updates = []
        original = torch.amp.GradScaler.update

        def update(scaler, new_scale=None):
            before = scaler.get_scale()
            original(scaler, new_scale)
            self.updates.append((before, scaler.get_scale()))

        self._patch = mock.patch.object(torch.amp.GradScaler, "update", update)
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()

    def summary(self):
        return {"steps": len(self.updates), "skipped": sum(after < before for before, after in self.updates),
                "first_scale": self.updates[0][0], "final_scale": self.updates[-1][1]}


def run_stages(check, name, overrides, stage_names):
    """Open a fresh run folder of quick with `overrides` and run `stage_names` in it; the run and its figures."""
    run = open_run("quick", check.work / name, {**overrides, "tracker": "none"}, overwrite=True)
    seconds, scalers = {}, {}
    for stage in stage_names:
        print(f"{name}: {stage} stage ...", flush=True)
        with ScaleRecorder() as scales:
            seconds[stage] = stages.STAGE_FUNCTIONS[stage](run).values["seconds"]
        if scales.updates:
            scalers[stage] = scales.summary()
    finished = {stage: (run.dir / layout.DONE_MARKERS[stage]).exists() for stage in stage_names}
    return run, {"stage_seconds": seconds, "finished": finished, "loss_scaler": scalers, "losses": losses(run)}


def losses(run):
    """First and last training loss of each trained model, and whether every loss logged was finite."""
    found = {}
    for stage, folder in (("train", "train"), ("distill", "distill")):
        path = run.dir / folder / "history.json"
        if path.exists():
            history = read_json(path)
            values = [step["loss"] for step in history["steps"]] + [epoch["loss"] for epoch in history["epochs"]]
            steps = history["steps"]
            found[stage] = {"first": steps[0]["loss"], "last": steps[-1]["loss"], "steps": len(steps),
                            "finite": all(math.isfinite(value) for value in values)}
    return found


def teacher_scores(run):
    metrics = read_json(run.dir / "evaluate" / "metrics.json")
    return {"accuracy": metrics["accuracy"], "accuracy_ci95": metrics["accuracy_ci95"], "n": metrics["n"]}


def fp16_part(check):
    """quick in fp16 (every stage) and in bf16 (through evaluate), the same seed, in this process."""
    base = DRY_RUN_QUICK if check.dry_run else {"model": check.minilm}
    if not check.cuda:
        check.note("fp16 on the CPU is the emulation (helpers.core.accelerators): a T4's fp16 autocast and loss scaler "
                   "on CPU kernels, so the loss scale and the skipped steps are checked as on a GPU")
    fp16_run, fp16 = run_stages(check, "quick-fp16", {**base, "precision": "fp16"}, ALL_STAGES)
    bf16_run, bf16 = run_stages(check, "quick-bf16", {**base, "precision": "bf16"}, TEACHER_STAGES)
    fp16["teacher"], bf16["teacher"] = teacher_scores(fp16_run), teacher_scores(bf16_run)
    low, high = bf16["teacher"]["accuracy_ci95"]
    scalers = fp16["loss_scaler"].values()
    checks = {
        "all_stages_finished": all(fp16["finished"].values()) and all(bf16["finished"].values()),
        "losses_finite": all(found["finite"] for run in (fp16, bf16) for found in run["losses"].values()),
        "loss_scale_above_0": len(scalers) == 2 and all(0 < s["final_scale"] < math.inf for s in scalers),
        "steps_not_all_skipped": all(s["skipped"] < s["steps"] for s in scalers),
        "teacher_inside_bf16_interval": low <= fp16["teacher"]["accuracy"] <= high,
    }  # (2 scalers: the teacher's and the student's training)
    return {"fp16": fp16, "bf16": bf16, "checks": checks}


@contextlib.contextmanager
def baseline_fitted_once(c_grid):
    """The evaluate and distill stages each fit the TF-IDF baseline (helpers.evaluate.scored_sets.fit_run_baseline) with
    helpers.evaluate.baseline.C_GRID; here it is fitted once per run folder, choosing C from `c_grid`."""
    if list(inspect.signature(baseline.fit_baseline).parameters)[-1] != "c_grid":
        raise RuntimeError("helpers.evaluate.baseline.fit_baseline no longer ends with c_grid: update baseline_fitted_once")
    original, fitted = scored_sets.fit_run_baseline, {}

    def fit_once(run):
        if run.dir not in fitted:
            fitted[run.dir] = original(run)
        return fitted[run.dir]

    with mock.patch.object(baseline.fit_baseline, "__defaults__", (tuple(c_grid),)), \
            mock.patch.object(scored_sets, "fit_run_baseline", fit_once):
        yield


def full_data_part(check):
    """Every stage on all of the payload's reviews, stage times, the teacher beside the TF-IDF baseline."""
    base = DRY_RUN_FULL_DATA if check.dry_run else {**FULL_DATA, "model": check.minilm, "n_test": check.full_test}
    check.note(f"the TF-IDF baseline's C is chosen from {list(FULL_DATA_C_GRID)} (not helpers.evaluate.baseline.C_GRID) "
               "and fitted once for both stages that use it")
    with baseline_fitted_once(FULL_DATA_C_GRID):
        run, figures = run_stages(check, "full-data", {**base, "data": check.imdb}, ALL_STAGES)
    summary = {row["split"]: row["reviews"] for row in read_json(run.dir / "data" / "summary.json")}
    sets = read_json(run.dir / "evaluate" / "test_sets.json")[scored_sets.MAIN]
    chosen = read_json(run.dir / "evaluate" / "baseline.json")
    comparison = read_json(run.dir / "distill" / "comparison.json")["models"]
    figures.update({
        "reviews": summary, "teacher": teacher_scores(run),
        "baseline": {**{key: sets["baseline"][key] for key in ("accuracy", "accuracy_ci95")}, **chosen,
                     "c_grid": list(FULL_DATA_C_GRID)},
        "student": {key: comparison["student"]["test"][key] for key in ("accuracy", "accuracy_ci95")},
        "params": {key: value for key, value in run.params.to_dict().items() if key in base or key == "data"},
    })
    checks = {"all_stages_finished": all(figures["finished"].values()),
              "losses_finite": all(found["finite"] for found in figures["losses"].values())}
    return {**figures, "checks": checks}
