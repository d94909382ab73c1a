"""pyproject.toml's ranges against Colab's packages (constraints/colab.txt).

The full check is `.ci/check_colab_install.py`, which `make test-colab` runs in a venv holding
Colab's versions: it asks pip what `pip install -e .` would install there. These tests catch the
plain case in any venv and in milliseconds: a direct dependency whose range leaves out the version
Colab has (as `ipywidgets>=8.0` did, which made the notebooks' install cell upgrade ipywidgets,
already imported by Colab, and ask for a runtime restart).
"""
import importlib.util
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints" / "colab.txt"
CHECK = ROOT / ".ci" / "check_colab_install.py"


def _check_module():
    spec = importlib.util.spec_from_file_location("check_colab_install", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dependencies():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 or newer reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [dep for deps in project.get("optional-dependencies", {}).values() for dep in deps]
    return [Requirement(dep) for dep in project["dependencies"] + extras]


def test_every_dependency_admits_the_version_colab_has():
    pins = _check_module().read_pins(CONSTRAINTS)
    assert "ipywidgets" in pins and "transformers" in pins  # the file was read
    refused = [f"{req} leaves out Colab's {pins[key][1]}" for req in _dependencies()
               if (key := canonicalize_name(req.name)) in pins and not req.specifier.contains(pins[key][1], prereleases=True)]
    assert not refused, "pyproject.toml would upgrade or downgrade Colab's packages: " + "; ".join(refused)


def test_torch_stays_out_of_the_constraints():
    """Colab's torch (a CUDA build) must never be reinstalled, and cannot be installed here."""
    pins = _check_module().read_pins(CONSTRAINTS)
    assert not [name for name in pins if name == "torch" or name.startswith(("nvidia-", "cuda-"))]


def test_the_install_check_fails_on_a_changed_colab_package(monkeypatch, capsys):
    check = _check_module()
    monkeypatch.setattr(check, "installed_mismatches", lambda pins: [])
    monkeypatch.setattr(check, "planned_installs", lambda: {
        "imdb-distil": ("imdb-distil", "0.1.0"), "papermill": ("papermill", "2.7.0"),
        "ipywidgets": ("ipywidgets", "8.1.9")})
    with pytest.raises(SystemExit, match=r"ipywidgets: Colab has 7\.7\.1, `pip install -e \.` would install 8\.1\.9"):
        check.main([str(CONSTRAINTS)])

    monkeypatch.setattr(check, "planned_installs", lambda: {"papermill": ("papermill", "2.7.0")})
    check.main([str(CONSTRAINTS)])  # adding what Colab lacks is fine
    assert "adds papermill==2.7.0" in capsys.readouterr().out
