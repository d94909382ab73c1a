"""`python -m helpers.run ...` called in this process: what a test of the runner's own checks needs, without
the seconds a fresh interpreter spends importing torch. Tests of what the notebooks do start real processes."""
import contextlib
import io
import os
import subprocess

from helpers.pipeline import runner, stages


def run_cli(*args, cwd=None):
    """helpers.pipeline.runner.main(args) as a finished process: returncode, stdout and stderr (an exit message included)."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    here = os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runner.main(list(args))
    except SystemExit as done:  # sys.exit("error: ...") prints its message to stderr and exits 1
        code = done.code if isinstance(done.code, int) else 1
        if isinstance(done.code, str):
            err.write(done.code + "\n")
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["python", "-m", "helpers.run", *args], code, out.getvalue(), err.getvalue())


def stage_functions(run_folder, overrides, kernel, stage_names):
    """A stand-in for helpers.pipeline.runner.execute_notebooks that runs each stage's function in this process (what a
    notebook's stage cell calls), for tests about the runner's plan rather than the notebooks; False: none failed."""
    for name in stage_names:
        stages.STAGE_FUNCTIONS[name](run_folder)
    return False
