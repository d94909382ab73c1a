"""Fail if installing the project on Colab would change a package Colab already has.

    .venv-colab/bin/python .ci/check_colab_install.py [constraints/colab.txt] [--extras export]

Run by `make test-colab` in a venv that holds Colab's packages (constraints/colab.txt) but not
yet the project. Two checks:
1. every package the constraints file names is installed at exactly that version here, so the
   venv really is Colab's set;
2. `pip install --dry-run -e .` with no constraints, which is what the notebooks' first cell
   (`%pip install -q -e /content/imdb-distil`) does on Colab, would install none of those
   packages at another version: an upgrade or downgrade of something Colab has already imported
   forces a runtime restart, or breaks Colab itself. New packages (papermill, ...) are fine.
   With `--extras export`, the same for `pip install -e .[export]` (05_distill's export cell).
Exit status 1 with one line per offending package; 0 with a list of what the install would add.
"""
import json
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path):
    """{canonical name: (name as written, version)} of the `name==version` lines of a constraints file."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonical(name)] = (name.strip(), version.strip())
    return pins


def installed_mismatches(pins):
    """Lines for constrained packages that are missing here or at another version."""
    problems = []
    for key, (name, version) in pins.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed in {sys.prefix} (Colab has {version})")
            continue
        if have != version:
            problems.append(f"{name}: {have} installed in {sys.prefix}, Colab has {version}")
    return problems


def planned_installs(project=ROOT, extras=""):
    """{canonical name: (name, version)} that `pip install -e PROJECT[EXTRAS]` would install, from pip's report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--report", str(report),
                        "-e", f"{project}{extras}"], check=True)
        items = json.loads(report.read_text())["install"]
    return {canonical(item["metadata"]["name"]): (item["metadata"]["name"], item["metadata"]["version"])
            for item in items}


def main(argv):
    argv = list(argv)
    extras = ""
    if "--extras" in argv:
        at = argv.index("--extras")
        extras = f"[{argv[at + 1]}]"
        del argv[at:at + 2]
    constraints = Path(argv[0]) if argv else ROOT / "constraints" / "colab.txt"
    pins = read_pins(constraints)
    problems = installed_mismatches(pins)
    if problems:
        sys.exit("this venv is not Colab's package set (install it with pip install -r "
                 f"{constraints} first):\n  " + "\n  ".join(problems))
    planned = planned_installs(extras=extras) if extras else planned_installs()
    changed = [f"{name}: Colab has {pins[key][1]}, `pip install -e .{extras}` would install {version}"
               for key, (name, version) in planned.items() if key in pins]
    if changed:
        sys.exit("installing the project on Colab would change packages Colab already has "
                 "(loosen the ranges in pyproject.toml):\n  " + "\n  ".join(changed))
    added = sorted(f"{name}=={version}" for key, (name, version) in planned.items() if key != "imdb-distil")
    print(f"ok: `pip install -e .{extras}` keeps all {len(pins)} packages of {constraints.name} at Colab's version; "
          f"it adds {', '.join(added) or 'nothing'}")


if __name__ == "__main__":
    main(sys.argv[1:])
