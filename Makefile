# skipviz: `make lab` to teach, `make test` to check. Everything installs into .venv.
PYTHON     ?= python3
VENV       ?= .venv
# A plain `pip install torch` fetches a multi-GB CUDA build; this CPU build is the default.
# Override for a GPU machine, e.g. make lab TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
LAB_ARGS   ?=
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.skipviz-installed
ROOT_FLAG  := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test notebooks lint bench clean

setup: $(STAMP)

# Rebuilt when pyproject.toml is newer than the last install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[lab,test]"
	@touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# Unit tests, every notebook run in FAST mode through papermill, then nbval (lax) on the cells
# marked # NBVAL_CHECK_OUTPUT against the stored FULL-mode outputs.
test: setup
	SKIPVIZ_FAST=1 $(PY) -m pytest tests
	SKIPVIZ_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

# Re-execute every notebook in FULL mode in place, refreshing what readers see.
notebooks: setup
	SKIPVIZ_FAST=0 $(PY) tests/execute_notebooks.py notebooks/*.ipynb

lint: setup
	$(PY) -m ruff check skipviz tests notebooks

bench: setup
	$(PY) tests/bench.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
