# skipviz: `make lab` to teach, `make test` to check. Everything installs into .venv.
PYTHON     ?= python3
VENV       ?= .venv
# torch==2.13.0 from PyPI is a CUDA build on Linux (a CPU build on macOS and Windows); docs/package.md's
# "Choosing a torch build" gives the CPU-build spec for a Linux laptop. Word-split on purpose:
# make lab TORCH_SPEC="torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
LAB_ARGS   ?=
BENCH_ARGS ?=
PY         := $(VENV)/bin/python
# Every install but torch's own is held to the exact versions of constraints.txt (`make lock`).
INSTALL    := $(PY) -m pip install --quiet -c constraints.txt
LAB_STAMP  := $(VENV)/.skipviz-lab
TEST_STAMP := $(VENV)/.skipviz-test
STUDENT_STAMP := $(VENV)/.skipviz-student
SITE_STAMP := $(VENV)/.skipviz-site
HUB_STAMP  := $(VENV)/.skipviz-hub
ROOT_FLAG  := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Other numerics than the machine's best: the portable pass of nbval (see `test-portable`).
PORTABLE   := ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
NBVAL      := $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

.PHONY: setup setup-test lab test test-portable test-all test-student student grade formgrader grades-csv homework hub-link handout hub-demo slides site claims browser notebooks lint bench fuzz lock clean

setup: $(LAB_STAMP)
setup-test: $(TEST_STAMP)

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.10 or newer, or run make PYTHON=/path/to/python3" >&2; exit 1; }
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 10))" || { echo "skipviz needs Python 3.10 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { echo "$(PYTHON) cannot make a virtual environment: install its venv module (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# What teaching needs (the run dependencies and JupyterLab); rebuilt when pyproject.toml or
# constraints.txt is newer than the last install.
$(LAB_STAMP): pyproject.toml constraints.txt | $(PY)
	@$(PY) tools/lock.py check
	@$(if $(strip $(TORCH_SPEC)),,echo "TORCH_SPEC is empty: give a pip requirement for torch, e.g. TORCH_SPEC=torch==2.13.0" >&2; exit 1;)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC) || { \
	  echo "could not install torch from TORCH_SPEC=$(TORCH_SPEC): see docs/package.md, 'Choosing a torch build'" >&2; exit 1; }
	$(INSTALL) -e ".[lab]"
	@touch $@

# The test tools on top (pytest, papermill, nbval, playwright, ruff, dask): `make test` only.
$(TEST_STAMP): $(LAB_STAMP)
	$(INSTALL) -e ".[lab,test,cluster]"
	@touch $@

# nbgrader, for the lecturer's `make student` (and its tests), never for the students.
$(STUDENT_STAMP): $(TEST_STAMP)
	$(INSTALL) -e ".[lab,test,cluster,student]"
	@touch $@

# Sphinx, MyST-NB and sphinx-book-theme for `make site`, on top of nbgrader (the student copies).
$(SITE_STAMP): $(STUDENT_STAMP)
	$(INSTALL) -e ".[lab,test,cluster,student,site]"
	@touch $@

# JupyterHub and nbgitpuller for `make hub-demo` and the hub test, on top of the site's packages.
$(HUB_STAMP): $(SITE_STAMP)
	$(INSTALL) -e ".[lab,test,cluster,student,site,hub]"
	@touch $@

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# Unit tests, then nbval (lax): every notebook run in FAST mode, any error failing it, and the cells
# marked # NBVAL_CHECK_OUTPUT compared with the stored FULL-mode outputs. (The same run through
# papermill, with its parameters injected, is in test-all.)
# Then every notebook once more in a real JupyterLab (started by `make lab`) in headless Chromium:
# widgets render and redraw when clicked. Skipped if chromium is missing (`make browser`),
# unless SKIPVIZ_REQUIRE_BROWSER=1 (as in CI).
test: setup-test
	SKIPVIZ_FAST=1 $(PY) -m pytest tests --ignore=tests/browser --ignore=tests/student -m "not papermill and not slow"
	SKIPVIZ_FAST=1 $(NBVAL)
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/browser/test_in_browser.py

# The error contract fuzzed for longer than `make test` does (tests/test_fuzz.py): random cases,
# FUZZ_EXAMPLES per public callable; what fails is kept in .hypothesis/ and replayed first next time.
FUZZ_EXAMPLES ?= 300
fuzz: setup-test
	SKIPVIZ_FAST=1 SKIPVIZ_FUZZ_PROFILE=fuzz SKIPVIZ_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider tests/test_fuzz.py -q -x

# nbval once more under other numerics: torch's generic CPU kernels (no AVX2/AVX-512) and one
# thread, as on another student's laptop. The checked cells must print the same there.
test-portable: setup-test
	$(PORTABLE) SKIPVIZ_FAST=1 $(NBVAL)

# Everything: `make test`, then the slower passes (the unit tests marked slow: process pools, a
# Dask cluster, more damaged data files; every notebook through papermill; the static slides and the
# course site (FAST states, every page offline, every panel by mouse and keyboard, axe-core) in the browser; other
# numerics; every notebook in FAST mode with SEED = 1, its claims checked; the student copies
# made, checked and run; a simulated class graded by `make grade`; the hand-out through a real
# JupyterHub with nbgitpuller). This is what CI (.ci/run) runs.
test-all: test $(HUB_STAMP)
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests --ignore=tests/browser --ignore=tests/student -m slow
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/test_notebooks.py -m papermill
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/browser/test_slides.py tests/browser/test_slideshow.py
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/browser/test_site.py
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/browser/test_hub.py
	$(MAKE) test-portable
	$(PY) tools/claims.py --fast --seeds 1
	$(MAKE) test-student

# The student copies (build/student/): nbgrader's generate_assignment releases them from the course
# folder build/course (solutions and hidden tests removed, outputs cleared); `make grade` grades
# against the same release.
student: $(STUDENT_STAMP)
	$(PY) tools/student.py

# The student copies are made twice (byte-identical), hold no solution line, and run in FAST mode;
# a simulated class is graded by `make grade` (tests/student/test_grading.py).
test-student: $(STUDENT_STAMP)
	SKIPVIZ_FAST=1 $(PY) -m pytest -p no:cacheprovider tests/student
	$(PY) tools/student.py --execute

# Grade a class's homework: SUBMISSIONS is a folder with one subfolder per student, or an LMS zip.
# nbgrader autogrades every notebook handed in (FAST mode; a cell may run GRADE_TIMEOUT seconds),
# then writes the feedback: build/grades/grades.csv, exercises.csv, feedback/<student>/ (tools/grade.py).
GRADE_TIMEOUT ?= 300
GRADES        ?= build/grades
grade: $(STUDENT_STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-or-zip [GRADE_TIMEOUT=300] [GRADES=build/grades]" >&2; exit 1; }
	$(PY) tools/grade.py "$(SUBMISSIONS)" --timeout $(GRADE_TIMEOUT) --out "$(GRADES)"

# The students' nbgitpuller link: make hub-link REPO=https://github.com/you/homework HUB=https://hub.example.edu
hub-link:
	@test -n "$(REPO)" -a -n "$(HUB)" || { echo "usage: make hub-link REPO=git-repository-of-the-student-copies HUB=https://your.hub" >&2; exit 1; }
	@$(PYTHON) tools/hub.py link "$(REPO)" "$(HUB)"

# Commit the student copies into a git repository for the hand-out: make handout HANDOUT=path/to/repo.git
handout: $(STUDENT_STAMP)
	@test -n "$(HANDOUT)" || { echo "usage: make handout HANDOUT=path/to/bare-repository.git" >&2; exit 1; }
	$(PY) tools/hub.py handout "$(HANDOUT)"

# A JupyterHub on this machine (any user name, password skipviz) handing out the student copies
# from build/hub/homework (a bare git repository) with nbgitpuller: try the students' side of the loop.
hub-demo: $(HUB_STAMP)
	$(PY) tools/hub.py demo

# nbgrader's formgrader (JupyterLab in the course folder, menu Nbgrader): grade the answers in words
# by hand after `make grade`; then `make grades-csv` writes grades.csv and the feedback with them.
# The course folder is build/course unless SKIPVIZ_COURSE names another (outside build/, which
# `make clean` removes, for a term's grades).
COURSE_DIR := $(or $(SKIPVIZ_COURSE),build/course)
formgrader: $(STUDENT_STAMP)
	cd "$(COURSE_DIR)" && $(abspath $(VENV))/bin/jupyter lab $(ROOT_FLAG) $(LAB_ARGS)

grades-csv: $(STUDENT_STAMP)
	$(PY) tools/grade.py --export --out "$(GRADES)"

# nbgrader's metadata in the notebooks, written from the points table tools/homework.toml.
homework: $(STUDENT_STAMP)
	$(PY) tools/homework.py metadata

# Every notebook in FULL mode for seeds 0-5: the claims that held, their margins over the seeds (slow: ~1 h cold).
claims: setup-test
	$(PY) tools/claims.py --seeds 0 1 2 3 4 5

# Debian's chromium for the browser tests (never a browser downloaded by playwright).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "install Debian's chromium package (sudo apt-get install chromium) for the browser tests"; exit 1; fi; }

# Static reveal.js slides from the stored outputs (build/slides/; reveal.js and MathJax copied
# next to them from the npm packages in tools/slides, so they work offline).
slides: setup-test
	$(PY) tools/slides.py

# Re-execute every notebook in FULL mode in place, refreshing what readers see.
notebooks: setup-test
	SKIPVIZ_FAST=0 SKIPVIZ_PROGRESS=0 $(PY) tests/execute_notebooks.py notebooks/*.ipynb

lint: setup-test
	$(PY) -m ruff check skipviz tests tools notebooks

# Installs the peer libraries of the loss-landscape comparison (the `bench` extra) first.
bench: setup-test
	$(INSTALL) -e ".[lab,test,bench]"
	$(PY) tests/bench.py $(BENCH_ARGS)

# Pin every package afresh: a clean venv gets torch and every extra, and pip freeze becomes
# constraints.txt. Run it after changing a requirement in pyproject.toml.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet $(TORCH_SPEC)
	build/lock-venv/bin/python -m pip install --quiet -e ".[lab,test,cluster,student,site,hub,bench]"
	build/lock-venv/bin/python tools/lock.py write build/lock-venv > constraints.txt
	rm -rf build/lock-venv

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The course site in build/site/: every notebook's page from its stored outputs, its kernel-free
# panels rendered by running it (FULL unless SKIPVIZ_FAST=1; trained models from the cache), the
# student copies and slide decks to download. Builds with no network (tools/course_site.py).
site: $(SITE_STAMP)
	$(PY) tools/course_site.py
