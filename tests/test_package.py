"""The package's shape (issue "helpers/ as a small package whose folders are the pipeline"): sub-packages in
the order helpers.LAYERS names, imports that only point down it, no cycle anywhere in the repository, and
modules that fit in one's head."""
import ast
import sys
from pathlib import Path

import helpers

PACKAGE = Path(helpers.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 300
# 6,000 when #28 made the package; raised for #30's Colab features (stage manifests, in-progress markers, the
# end-of-run summary), which are new behaviour rather than growth of the old. Raise it on purpose, never silently.
MAX_PACKAGE_LINES = 6600
ENTRY_POINTS = {"run", "predict", "export", "report"}


def module_name(path, root=ROOT):
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(folder):
    return sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


MODULES = {module_name(path): path for path in python_files(PACKAGE)}


def imports_of(path, known):
    """The modules of `known` that `path` imports, at its top or inside a function (a lazy import is still a
    dependency): `from helpers.x import y` counts as helpers.x.y where that is a module, else as helpers.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name in known} - {module_name(path) if path.is_relative_to(ROOT) else ""}


def layer(module):
    """Where a helpers module stands in helpers.LAYERS: the entry points above everything, __init__ below."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # helpers/__init__.py
    if len(parts) == 2 and parts[1] in ENTRY_POINTS:
        return len(helpers.LAYERS)
    return helpers.LAYERS.index(parts[1])


def test_every_module_sits_in_a_sub_package_of_the_written_order():
    top = {name for name in MODULES if name.count(".") == 1}
    assert top <= {f"helpers.{name}" for name in ENTRY_POINTS} | set(f"helpers.{p}" for p in helpers.LAYERS)
    assert {name.split(".")[1] for name in MODULES if name.count(".") >= 2} == set(helpers.LAYERS)
    assert len(helpers.LAYERS) >= 5


def test_imports_point_down_the_written_order():
    against = [(name, imported) for name, path in MODULES.items() for imported in imports_of(path, MODULES)
               if imported.startswith("helpers.") and layer(imported) > layer(name)]
    assert against == []


def test_the_entry_points_only_call_their_sub_package():
    for name in ENTRY_POINTS:
        assert len(MODULES[f"helpers.{name}"].read_text().splitlines()) <= 6


def test_no_module_is_over_300_lines_and_the_package_within_its_budget():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
    assert sum(lengths.values()) <= MAX_PACKAGE_LINES


def test_no_module_shadows_the_standard_library_or_reads_like_a_test_file():
    leaves = {name.split(".")[-1] for name in MODULES}
    assert not [name for name in leaves if name in sys.stdlib_module_names or name.startswith("test")]


def repository_graph():
    """Every module of the repository (helpers, bench, tests) and what it imports of the others."""
    files = python_files(PACKAGE) + python_files(ROOT / "bench") + python_files(ROOT / "tests")
    known = {module_name(path): path for path in files}
    return {name: imports_of(path, known) for name, path in known.items()}


def find_cycle(graph):
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            return on_path[on_path.index(name):] + [name]
        if name in done:
            return None
        on_path.append(name)
        for imported in sorted(graph.get(name, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        on_path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return " -> ".join(cycle)
    return None


def test_no_import_cycle_in_the_repository():
    assert find_cycle(repository_graph()) is None


def test_the_checks_find_a_cycle_and_an_import_against_the_order(tmp_path):
    """The checks above can fail: two modules that import each other are caught, and so is core importing train."""
    (tmp_path / "helpers" / "core").mkdir(parents=True)
    (tmp_path / "helpers" / "core" / "a.py").write_text("from helpers.train.b import x\n")
    (tmp_path / "helpers" / "train").mkdir()
    (tmp_path / "helpers" / "train" / "b.py").write_text("def f():\n    from helpers.core import a\n")
    known = {module_name(path, tmp_path): path for path in python_files(tmp_path)}
    graph = {name: imports_of(path, known) for name, path in known.items()}
    assert find_cycle(graph) == "helpers.core.a -> helpers.train.b -> helpers.core.a"
    assert layer("helpers.train.b") > layer("helpers.core.a")


def test_the_readme_and_docs_layout_name_every_module_of_each_sub_package():
    """The README's table (a row per sub-package) and docs/layout.md (a bullet per sub-package) stay in step with
    the folders: a module added, moved or renamed without its line in both fails here."""
    readme = (ROOT / "README.md").read_text()
    layout = (ROOT / "docs" / "layout.md").read_text()
    for package in helpers.LAYERS:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `helpers.{package}` |"))
        bullet = layout.split(f"- `helpers.{package}`")[1].split("\n- ")[0]
        modules = {path.stem for path in (PACKAGE / package).glob("*.py") if path.stem != "__init__"}
        assert {m for m in modules if f"`{m}`" not in row} == set(), package
        assert {m for m in modules if f"`{m}`" not in bullet} == set(), package
