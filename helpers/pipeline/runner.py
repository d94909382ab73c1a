"""Run the five notebooks in order through papermill, into one run folder.

    python -m helpers.run quick                                  # offline default, CPU
    python -m helpers.run smoke --run-dir /tmp/smoke             # seconds; what the tests run
    python -m helpers.run subset -p n_train 2000 -p epochs 2     # hub data and bert-base-uncased
    python -m helpers.run quick --sweep n_train=250,500,1000,2000 # a learning curve (helpers.pipeline.sweep)
    python -m helpers.run quick --seeds 3                         # seeds 42, 43, 44: mean and spread

Parameters are validated before any notebook starts; the run folder (docs/run_folder.md) gets its report.html
(helpers.report) even when a stage fails.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from helpers.core.accelerators import is_main_process
from helpers.core.errors import ConfigError, DataError
from helpers.core.files import PROJECT_ROOT, write_json
from helpers.pipeline.checks import check_inputs, open_run
from helpers.pipeline.report import write_report
from helpers.pipeline.sweep import (collect, collect_grid, parse_sweep, run_dirs, seed_summary, write_grid_results,
                                    write_results)
from helpers.runs import layout
from helpers.runs.config import available_profiles, describe_params, resolve_params
from helpers.runs.run_folder import default_run_dir, read_timings, stages_from_first_missing

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
STAGE_NOTEBOOKS = layout.NOTEBOOKS
NOTEBOOKS = tuple(STAGE_NOTEBOOKS.values())
# the kernel's own log, not the notebook's output: a warning about TCP without encryption at every start, an error when
# the interrupt that opens its shutdown lands mid-message; nothing a user can act on (papermill reports failing cells)
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m helpers.run", description=__doc__.split("\n\n")[0],
        epilog=PATH_RULE + "\n\nparameters (-p NAME VALUE):\n  " + "\n  ".join(describe_params()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", help=f"named parameter set in profiles/: {', '.join(available_profiles())}")
    parser.add_argument("--run-dir", default="", help="run folder (default: runs/<profile>)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override one parameter of the profile; repeatable")
    parser.add_argument("--overwrite", action="store_true", help="delete what the run folder holds and start afresh")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel that runs the notebooks (default python3)")
    parser.add_argument("--sweep", metavar="NAME=V1,V2,...",
                        help="one run per value of a parameter, each in its own folder under --run-dir, then a table "
                             "and a figure of what each value buys, e.g. n_train=250,500,1000,2000 (a learning curve)")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="the same run with N seeds (the profile's seed and the next N-1): short for --sweep "
                             "seed=...; prints each figure's mean, standard deviation, min and max over the seeds")
    parser.add_argument("--stages", type=_stage_list, default=None,
                        help=f"comma-separated stages to run, in order, done or not (default: from the first stage not "
                             f"yet done in the run folder on, so the same command again continues a run: "
                             f"{','.join(STAGE_NOTEBOOKS)})")
    return parser.parse_args(argv)


def _stage_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if (unknown := [name for name in names if name not in STAGE_NOTEBOOKS]) or not names:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown or [text]}: choose from {', '.join(STAGE_NOTEBOOKS)}")
    return [name for name in STAGE_NOTEBOOKS if name in names]  # always in pipeline order


def main(argv=None):
    args = parse_args(argv)
    try:
        args.sweep = args.sweep or _seed_sweep(args)  # with both, a grid: each value under each seed
        plan = _plan(args)
        opened = [(open_run(args.profile, run_dir, overrides, overwrite=args.overwrite, writer=is_main_process()), overrides)
                  for run_dir, overrides in plan]
    except (ConfigError, DataError) as error:
        sys.exit(f"error: {error}")
    for run, overrides in opened:
        if execute(run, overrides, args):
            sys.exit(1)
    if args.sweep and is_main_process():
        _sweep_results(args, opened)


def _sweep_results(args, opened):
    """sweep.csv, the curve and the printed table of a finished sweep (helpers.pipeline.sweep)."""
    name, values = parse_sweep(args.sweep)
    if name != "seed" and args.seeds:  # a grid: each value's runs, one per seed, then their medians
        sweep_dir = opened[0][0].dir.parent.parent
        runs = collect_grid(name, values, [run.dir for run, _ in opened])
        table = write_grid_results(sweep_dir, name, runs)
        print(f"{runs.round(4).to_string()}\nmedian over {args.seeds} seeds:\n{table.round(4).to_string()}\n"
              f"learning curve: {sweep_dir / 'learning_curve.png'}")
        return
    table = collect(name, {value: run.dir for value, (run, _) in zip(values, opened)})
    sweep_dir = opened[0][0].dir.parent
    write_results(sweep_dir, name, table)
    print(f"{table.round(4).to_string()}\nlearning curve: {sweep_dir / 'learning_curve.png'}")
    if name == "seed":
        print(f"over {len(values)} seeds:\n{seed_summary(table).round(4).to_string()}")


def _seed_sweep(args):
    """--seeds N as the --sweep it stands for ('' without --seeds)."""
    return "seed=" + ",".join(map(str, _seeds(args))) if args.seeds else ""


def _seeds(args):
    """The seeds of --seeds N: the profile's seed and the next N - 1."""
    if args.seeds < 2:
        raise ConfigError("--seeds: give 2 or more, e.g. --seeds 3")
    first = resolve_params(args.profile, dict(args.param)).seed
    return [first + i for i in range(args.seeds)]


def _plan(args):
    """(run folder, overrides) of each run to make: one, or one per value of a --sweep.
    Every run's parameters and inputs are checked here, before any folder is written."""
    overrides = typed_paths(dict(args.param))
    params = resolve_params(args.profile, overrides)
    overrides = {name: getattr(params, name) for name in overrides}
    if not args.sweep:
        return [(Path(args.run_dir or default_run_dir(args.profile, overrides)).resolve(), overrides)]
    name, values = parse_sweep(args.sweep)
    sweep_dir = Path(args.run_dir or f"{default_run_dir(args.profile, overrides)}-sweep-{name}").resolve()
    seeds = _seeds(args) if args.seeds and name != "seed" else [None]
    plan = []
    for value, value_dir in run_dirs(sweep_dir, name, values).items():
        for seed in seeds:
            changes = {name: value} if seed is None else {name: value, "seed": seed}
            params = resolve_params(args.profile, {**overrides, **changes})
            check_inputs(params)
            run_dir = value_dir if seed is None else value_dir / f"seed-{seed}"
            plan.append((run_dir, {**overrides, **{key: getattr(params, key) for key in changes}}))
    return plan


PATH_PARAMS = ("data", "model", "student_model", "unlabelled", "extra_test")  # extra_test: a comma-separated list
PATH_RULE = (f"paths: relative paths on this command line (--run-dir, and -p {', '.join(PATH_PARAMS)})\n"
             "are read from the current folder (a -p value naming nothing there is passed on as typed: a hub name,\n"
             "or a path from the project root). In a notebook's parameters and papermill's -p, relative paths are\n"
             "read from the project root.")
PATH_KEYWORDS = ("", "sample", "short", "minilm-l6", "tiny-random-bert", "distil-from-teacher")  # never paths


def typed_paths(overrides, start=None):
    """Path parameters as PATH_RULE tells users: one that exists from `start` is made absolute (relative to the project
    root when inside it, so run folder names stay put); the rest stay as typed (helpers.core.files.project_path)."""
    start = Path(start or Path.cwd())
    typed = dict(overrides)
    for name in PATH_PARAMS:
        if isinstance(typed.get(name), str):
            typed[name] = ",".join(_typed_path(item.strip(), start) for item in typed[name].split(","))
    return typed


def _typed_path(item, start):
    path = Path(item).expanduser()
    if item in PATH_KEYWORDS or path.is_absolute() or not (start / path).exists():
        return item
    resolved = (start / path).resolve()
    return str(resolved.relative_to(PROJECT_ROOT)) if resolved.is_relative_to(PROJECT_ROOT) else str(resolved)


def execute(run, overrides, args):
    """Run the chosen stages into `run` (notebooks, or functions in a multi-process launch); True if one failed."""
    stage_names = args.stages or stages_not_done(run.dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # more than 1 under `accelerate launch` or torchrun
        return execute_stages(run, stage_names)
    print(f"run folder: {run.dir}")
    return execute_notebooks(run, overrides, args.kernel, stage_names)


def stages_not_done(run_dir):
    """The stages from the first whose output the run folder lacks on: the same command again continues a run
    (a finished stage keeps no checkpoints, so running it again would train it afresh: --stages NAME does that)."""
    names = list(STAGE_NOTEBOOKS)
    todo = stages_from_first_missing(run_dir, names)
    for name in names[:len(names) - len(todo)]:
        print(f"{name}: done already ({layout.DONE_MARKERS[name]}); --stages {name} runs it again", flush=True)
    return todo


def execute_stages(run, stage_names):
    """A multi-process launch: every process runs the stage functions (a notebook has one kernel, so none are
    executed); data and tokenize run in the first process while the others wait."""
    import torch
    from accelerate import PartialState

    from helpers.pipeline import estimates, stages

    # without a GPU, Accelerate joins the processes only when told they are CPU processes (gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    state.wait_for_everyone()  # the first process has written the run folder
    state.print(f"run folder: {run.dir}; {state.num_processes} processes run the stages as functions, without notebooks")
    timings = read_timings(run.dir)
    for name in stage_names:
        started = time.perf_counter()
        state.print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        if state.is_main_process:
            estimates.announce(run, name)
        if state.is_main_process or name not in stages.MAIN_PROCESS_STAGES:
            stages.STAGE_FUNCTIONS[name](run)
        state.wait_for_everyone()
        timings[STAGE_NOTEBOOKS[name]] = round(time.perf_counter() - started, 1)
        if state.is_main_process:
            write_json(run.dir / layout.TIMINGS_FILE, timings)
        state.print(f"    done in {timings[STAGE_NOTEBOOKS[name]]} s", flush=True)
    if state.is_main_process:
        print(f"report: {write_report(run.dir)}")
    return False


def execute_notebooks(run, overrides, kernel, stage_names=tuple(STAGE_NOTEBOOKS)):
    """Execute each notebook into the run folder; stop at the first failure. Returns True if one failed."""
    import papermill

    # prefer the kernel of this very Python, so the notebooks import the same helpers
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [f"{sys.prefix}/share/jupyter", os.environ.get("JUPYTER_PATH")]))
    timings = read_timings(run.dir)
    out_dir = run.dir / layout.NOTEBOOKS_FOLDER
    out_dir.mkdir(exist_ok=True)
    failure_file = run.dir / layout.FAILURE_FILE
    for name in [STAGE_NOTEBOOKS[stage] for stage in stage_names]:
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        failure_file.unlink(missing_ok=True)  # an earlier run's failure no longer stands
        failure = None
        try:
            # the kernel's stdout streams here: the stages' text progress bars and epoch lines (helpers.core.progress)
            papermill.execute_notebook(
                NOTEBOOK_DIR / name, out_dir / name, kernel_name=kernel, cwd=NOTEBOOK_DIR, progress_bar=False,
                parameters={"profile": run.profile, "run_dir": str(run.dir), "overrides": overrides},
                stdout_file=sys.stdout, extra_arguments=QUIET_KERNEL)
        except papermill.PapermillExecutionError as error:
            failure = error
        finally:  # also on Ctrl-C: the time spent is kept, and the failed stage's time reaches its report
            timings[name] = round(time.perf_counter() - started, 1)
            write_json(run.dir / layout.TIMINGS_FILE, timings)
        if failure:
            write_json(failure_file, {"notebook": name, "error": f"{failure.ename}: {failure.evalue}"})
            print(f"{name} failed: {failure.ename}: {failure.evalue}\n  see the executed notebook {out_dir / name}",
                  file=sys.stderr)
            print(f"report of the stages so far: {write_report(run.dir)}")
            return True
        print(f"    done in {timings[name]} s", flush=True)
    print(f"all stages done in {sum(timings.values()):.0f} s; results in {run.dir}")
    print(f"report: {write_report(run.dir)}")
    return False

