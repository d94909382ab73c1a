"""Run the five notebooks in order through papermill, into one run folder.

    python -m helpers.run quick                                  # offline default, CPU
    python -m helpers.run smoke --run-dir /tmp/smoke             # seconds; what the tests run
    python -m helpers.run subset -p n_train 2000 -p epochs 2     # hub data and bert-base-uncased
    python -m helpers.run quick --run-dir runs/q2 --overwrite    # start a run folder afresh

Parameters are validated before any notebook starts. The run folder ends up holding the
executed notebooks (notebooks/), params.json, environment.json, timings.json and each
stage's files.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from helpers.config import PROJECT_ROOT, ConfigError, available_profiles, describe_params, resolve_params
from helpers.data import DataError
from helpers.io import write_json
from helpers.progress import PLAIN_PROGRESS
from helpers.runs import default_run_dir, open_run

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("01_data.ipynb", "02_tokenize.ipynb", "03_train.ipynb", "04_evaluate.ipynb", "05_distill.ipynb")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m helpers.run", description=__doc__.split("\n\n")[0],
        epilog="parameters (-p NAME VALUE):\n  " + "\n  ".join(describe_params()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", help=f"named parameter set in profiles/: {', '.join(available_profiles())}")
    parser.add_argument("--run-dir", default="", help="run folder (default: runs/<profile>)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override one parameter of the profile; repeatable")
    parser.add_argument("--overwrite", action="store_true", help="delete what the run folder holds and start afresh")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel that runs the notebooks (default python3)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    overrides = dict(args.param)
    try:
        params = resolve_params(args.profile, overrides)
        overrides = {name: getattr(params, name) for name in overrides}
        run_dir = Path(args.run_dir or default_run_dir(args.profile)).resolve()
        run = open_run(args.profile, run_dir, overrides, overwrite=args.overwrite)  # every check before any write
    except (ConfigError, DataError) as error:
        sys.exit(f"error: {error}")
    print(f"run folder: {run.dir}")
    failed = execute_notebooks(run, overrides, args.kernel)
    sys.exit(1 if failed else 0)


def execute_notebooks(run, overrides, kernel):
    """Execute each notebook into the run folder; stop at the first failure. Returns True if one failed."""
    import papermill

    os.environ[PLAIN_PROGRESS] = "1"
    # prefer the kernel of this very Python, so the notebooks import the same helpers
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [f"{sys.prefix}/share/jupyter", os.environ.get("JUPYTER_PATH")]))
    timings = {}
    out_dir = run.dir / "notebooks"
    out_dir.mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        try:
            papermill.execute_notebook(
                NOTEBOOK_DIR / name, out_dir / name, kernel_name=kernel, cwd=NOTEBOOK_DIR, progress_bar=False,
                parameters={"profile": run.profile, "run_dir": str(run.dir), "overrides": overrides})
        except papermill.PapermillExecutionError as error:
            print(f"{name} failed: {error.ename}: {error.evalue}\n  see the executed notebook {out_dir / name}", file=sys.stderr)
            return True
        finally:
            timings[name] = round(time.perf_counter() - started, 1)
            write_json(run.dir / "timings.json", timings)
        print(f"    done in {timings[name]} s", flush=True)
    print(f"all stages done in {sum(timings.values()):.0f} s; results in {run.dir}")
    return False


if __name__ == "__main__":
    main()
