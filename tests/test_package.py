"""The package's shape (issue "one way through"): modules that fit in one's head, names a newcomer can trust,
and layers without import cycles, so any behaviour is found by its name and read from one place."""
import ast
import sys
from pathlib import Path

import helpers

PACKAGE = Path(helpers.__file__).parent
MODULES = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
MAX_LINES = 300


def imports_of(path):
    """The helpers modules `path` imports, at its top or inside a function (a lazy import is still a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "helpers":
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("helpers.")}
    return found - {path.stem}


def test_no_module_is_over_300_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_no_module_shadows_the_standard_library_or_reads_like_a_test_file():
    assert not [name for name in MODULES if name in sys.stdlib_module_names or name.startswith("test")]


def test_the_modules_import_each_other_without_a_cycle():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(name):] + [name]))
        if name in done:
            return
        on_path.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other are caught."""
    (tmp_path / "a.py").write_text("from helpers import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from helpers.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {"a": tmp_path / "a.py", "b": tmp_path / "b.py"})
    try:
        test_the_modules_import_each_other_without_a_cycle()
    except AssertionError as error:
        assert "a -> b -> a" in str(error)
    else:
        raise AssertionError("the cycle a <-> b went unnoticed")
