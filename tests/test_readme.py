"""The README's shell commands, as a newcomer copies them from its code blocks: the cheap ones run for real (every
entry point's --help; helpers.export, helpers.predict and helpers.report on a smoke run, with the shipped CSV at the
path the README gives), the others are read by the parser that would read them (helpers.run's, papermill's,
accelerate's, make's dry run), and checked for what a parser cannot see (a later command on a run folder repeats
the values that made it). Also: the README's length, its links, and the module names in it, the docs and the
notebooks' text."""
import dataclasses
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

from helpers.core.files import PROJECT_ROOT
from helpers.pipeline import runner
from helpers.pipeline.notebook import NAMED
from helpers.runs.config import resolve_params

README = PROJECT_ROOT / "README.md"
TEXT = README.read_text()
PYTHONS = ("python", "python3", ".venv/bin/python")
SHIPPED_CSV = "helpers/data/sample_data/my_reviews.csv"
NOTEBOOK_VARIABLES = {"profile", "run_dir", "drive", "fresh", "overrides", *NAMED}


def readme_commands():
    """Each command in the README's bash blocks as its words: comments, `&&` chains and NAME=VALUE prefixes taken off."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                command, words = words[:cut], words[cut + 1:]
                while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
                    command = command[1:]
                if command:
                    commands.append(command)
    return commands


COMMANDS = readme_commands()


def kind(words):
    """What a command is, for the test that checks it: a module run with -m, or the program's name."""
    if words[0] in PYTHONS and words[1:2] == ["-m"]:
        return words[2]
    if words[:2] == ["accelerate", "launch"]:
        return "accelerate launch"
    return words[0].split("/")[-1]  # make, papermill, .venv/bin/pip


def of_kind(name):
    return [words for words in COMMANDS if kind(words) == name]


def test_the_readme_is_short_and_this_test_checks_every_command_it_shows():
    assert len(TEXT.splitlines()) <= 250
    checked = {"make", "pip", "venv", "helpers.run", "helpers.predict", "helpers.export", "helpers.report", "papermill",
               "accelerate launch"}
    assert len(COMMANDS) >= 10
    unchecked = [" ".join(words) for words in COMMANDS if kind(words) not in checked]
    assert not unchecked, f"teach tests/test_readme.py to check these README commands: {unchecked}"


def test_the_make_targets_exist_and_run_what_the_readme_says():
    targets = [words[1] for words in of_kind("make")]
    assert {"smoke", "quick"} <= set(targets)
    for target in targets:
        dry = subprocess.run(["make", "-n", target], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        if target in ("smoke", "quick"):
            assert f"-m helpers.run {target}" in dry.stdout, dry.stdout


def test_the_set_up_by_hand_is_the_makefiles():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    torch = re.search(r"^TORCH \?= (\S+)", makefile, re.M).group(1)
    made = set(makefile.replace("$(TORCH)", torch).replace("$(VENV)", ".venv").replace('"', "").split())
    setup = of_kind("pip") + of_kind("venv")
    assert len(of_kind("pip")) >= 2 and of_kind("venv")
    for words in setup:
        missing = [word for word in words[words.index("install") + 1 if "install" in words else 1:] if word not in made]
        assert not missing, f"{' '.join(words)}: {missing} are not what `make` installs"
    assert of_kind("helpers.run")[0][3:] == ["quick"]  # the by-hand block ends as `make quick` does


def _planned(args, monkeypatch):
    """(run folders, resolved parameters) the runner plans for these arguments, read from the project root as the
    README's commands are typed there; nothing is written."""
    monkeypatch.chdir(PROJECT_ROOT)
    parsed = runner.parse_args(args)
    parsed.sweep = parsed.sweep or runner._seed_sweep(parsed)
    plan = runner._plan(parsed)
    return parsed, [(run_dir, resolve_params(parsed.profile, overrides)) for run_dir, overrides in plan]


def test_every_batch_run_parses_and_a_later_command_on_a_folder_repeats_the_values_that_made_it(monkeypatch):
    launched = [words[words.index("-m") + 1:] for words in of_kind("accelerate launch")]
    from accelerate.commands.launch import launch_command_parser
    for words in of_kind("accelerate launch"):
        assert launch_command_parser().parse_args(words[2:]).module
    commands = [words[3:] for words in of_kind("helpers.run")] + [words[1:] for words in launched]
    assert len(commands) >= 5 and any("--stages" in args for args in commands)
    made = {}  # run folder -> the parameters of the first command that names it
    for args in commands:
        parsed, plan = _planned(args, monkeypatch)
        for run_dir, params in plan:
            if run_dir in made and not parsed.overwrite:
                changed = {k: v for k, v in dataclasses.asdict(params).items() if dataclasses.asdict(made[run_dir])[k] != v}
                assert not changed, f"`{' '.join(args)}` would be refused by {run_dir}: {changed}"
            made.setdefault(run_dir, params)


def test_the_papermill_commands_parse_and_set_only_the_parameters_cells_variables():
    from papermill.cli import papermill
    commands = of_kind("papermill")
    assert commands
    for words in commands:
        given = papermill.make_context("papermill", list(words[1:])).params
        assert (PROJECT_ROOT / given["notebook_path"]).is_file()
        names = [name for name, _ in given["parameters"]]
        names += [name for text in given["parameters_yaml"] for name in yaml.safe_load(text)]
        assert names and set(names) <= NOTEBOOK_VARIABLES, names


def test_every_entry_point_the_readme_names_answers_help_and_helpers_run_says_the_path_rule_as_the_readme():
    modules = sorted(set(re.findall(r"python -m (helpers(?:\.\w+)+)", TEXT)))
    assert {"helpers.run", "helpers.predict", "helpers.export", "helpers.report"} <= set(modules)
    for module in modules:
        shown = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, timeout=120)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (module, shown.stderr[-2000:])
        if module == "helpers.run":
            help_text = " ".join(shown.stdout.split())
    readme = " ".join(TEXT.split())
    for rule in ("are read from the current folder", "relative paths are read from the project root"):
        assert rule in help_text and rule in readme, rule


@pytest.fixture
def project_copy(smoke_run_dir, tmp_path):
    """A folder laid out as the project is where the README's commands are typed: runs/quick (here a finished smoke
    run) and the shipped CSV at its path."""
    pytest.importorskip("onnxruntime", reason="the export extra: pip install -e .[export]")
    shutil.copytree(smoke_run_dir, tmp_path / "runs" / "quick")
    (tmp_path / SHIPPED_CSV).parent.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / SHIPPED_CSV, tmp_path / SHIPPED_CSV)
    return tmp_path


def test_the_export_predict_and_report_commands_run_as_written_on_a_finished_run(project_copy, monkeypatch):
    from helpers.serve import export
    commands = [words for words in COMMANDS if kind(words) in ("helpers.export", "helpers.predict", "helpers.report")]
    assert any(SHIPPED_CSV in words for words in commands) and any("runs/quick/export" in words for words in commands)
    for words in commands:
        if "--push-to-hub" in words:  # needs the hub and a token: the arguments are checked, the upload recorded
            pushed = []
            monkeypatch.setattr(export, "check_can_push", pushed.append)
            monkeypatch.setattr(export, "push_to_hub", lambda folder, repo: pushed.append(repo))
            monkeypatch.setattr(export, "export_run", lambda *args: None)
            monkeypatch.chdir(project_copy)
            export.main(words[3:])
            assert pushed == [words[words.index("--push-to-hub") + 1]] * 2
            continue
        # the copy's helpers/ holds only the CSV: the project root on the path finds the real package, as it is found
        # from the project's own folder (an editable install maps helpers to it without a path entry)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, *words[1:]], cwd=project_copy, capture_output=True, text=True, timeout=300,
                              env=env)
        assert done.returncode == 0, (" ".join(words), done.stderr[-3000:])
        if kind(words) == "helpers.predict" and "--out" not in words:
            assert "POSITIVE" in done.stdout and "p_positive" in done.stdout
        if SHIPPED_CSV in words:
            assert "accuracy" in done.stderr + done.stdout  # the shipped reviews carry labels
    assert (project_copy / "runs" / "quick" / "export" / "student.int8.onnx").is_file()
    assert (project_copy / "scored.csv").is_file() and (project_copy / "runs" / "quick" / "report.html").is_file()


DOCS = [README] + sorted(path for path in (PROJECT_ROOT / "docs").glob("*.md"))


def _slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_local_link_in_the_readme_and_the_docs_finds_its_file_and_heading():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            assert linked.exists(), f"{doc.name}: {target}"
            if anchor and linked.suffix == ".md":
                headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.M)}
                assert anchor in headings, f"{doc.name}: {target}"


def _resolves(dotted):
    """Whether helpers.a.b(.c) names a module, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_the_readme_the_docs_and_the_notebooks_text_name_modules_and_files_that_exist():
    texts = {path.name: path.read_text() for path in DOCS if path.name != "results.md"}  # results.md: dated, as it was
    for notebook in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(notebook, as_version=4).cells
        texts[notebook.name] = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    for name, text in texts.items():
        dotted = set(re.findall(r"\bhelpers(?:\.\w+)+", text))
        assert not [d for d in dotted if not _resolves(d)], (name, [d for d in dotted if not _resolves(d)])
        files = set(re.findall(r"\bhelpers/[\w/]+\.\w+", text))
        assert not [f for f in files if not (PROJECT_ROOT / f).exists()], (name, files)
