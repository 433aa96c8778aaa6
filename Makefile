# skipviz: `make lab` to teach, `make test` to check. Everything installs into .venv.
PYTHON     ?= python3
VENV       ?= .venv
# A plain `pip install torch` fetches a multi-GB CUDA build; this CPU build is the default.
# Override for a GPU machine, e.g. make lab TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
LAB_ARGS   ?=
BENCH_ARGS ?=
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.skipviz-installed
ROOT_FLAG  := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test browser notebooks lint bench clean

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
# Then every notebook once more in a real JupyterLab (started by `make lab`) in headless Chromium:
# widgets render and redraw when clicked. Skipped if chromium is missing (`make browser`),
# unless SKIPVIZ_REQUIRE_BROWSER=1 (as in CI).
test: setup
	SKIPVIZ_FAST=1 $(PY) -m pytest tests --ignore=tests/browser
	SKIPVIZ_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/browser

# Debian's chromium for the browser tests (never a browser downloaded by playwright).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "install Debian's chromium package (sudo apt-get install chromium) for the browser tests"; exit 1; fi; }

# Re-execute every notebook in FULL mode in place, refreshing what readers see.
notebooks: setup
	SKIPVIZ_FAST=0 SKIPVIZ_PROGRESS=0 $(PY) tests/execute_notebooks.py notebooks/*.ipynb

lint: setup
	$(PY) -m ruff check skipviz tests notebooks

# Installs the peer libraries of the loss-landscape comparison (the `bench` extra) first.
bench: setup
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) tests/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
