# The two commands of the README's quick start:
#   make book   build the HTML book (every notebook executed, warnings are errors)
#   make test   run the whole test suite (what .ci/run runs)
# Both create .venv and install requirements.txt + gdlib (editable) the first time.

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
# nbgrader and jupyter-book start subprocesses (alembic, kernels): the venv's bin/ must be on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: book test validate grade lint exercises scan clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

# Executed notebooks are cached by their own content (_build/.jupyter_cache), so a change to
# gdlib alone would leave stale outputs: when gdlib's sources change, drop the cache and the
# doctrees and rebuild every page.
GDLIB_HASH = $(shell cat gdlib/*.py | sha256sum | cut -c1-16)

book: $(STAMP)
	@if [ -d _build ] && [ "$$(cat _build/.gdlib-hash 2>/dev/null)" != "$(GDLIB_HASH)" ]; then \
		echo "gdlib changed since the last build: re-executing every notebook"; \
		rm -rf _build/.jupyter_cache _build/.doctrees; fi
	$(BIN)/python book/_ext/preexecute.py .
	$(BIN)/jupyter-book build . -n -W --keep-going
	@echo $(GDLIB_HASH) > _build/.gdlib-hash
	@echo "Book built: open _build/html/index.html"

# Two workers (pytest-xdist): one builds the book (executing every page once) while the other
# runs nbval on the solutions and the autograde round trips; see tests/conftest.py.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The instructor's check before a release: every book and solution notebook runs under nbval,
# every solution passes its own tests (hidden ones included: they run in the notebook), every
# released exercise fails only in its test cells, and exercises/ matches a fresh
# `nbgrader generate_assignment`.
validate: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider -q --nbval-lax --nbval-current-env book solutions
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider -q tests -k "unanswered_release or fresh_release or committed_exercises"

lint: $(STAMP)
	$(BIN)/ruff check .

# Regenerate the student notebooks in exercises/ from the nbgrader sources in solutions/.
exercises: $(STAMP)
	$(BIN)/python -m gdgrade release

# Grade every submission in DIR (nbgrader's submitted/ layout or LMS downloads) in parallel:
# make grade DIR=downloaded/01_losses [SCHEDULER=tcp://host:8786]  (see gdgrade/batch.py)
SCHEDULER ?=
grade: $(STAMP)
	$(BIN)/python -m gdgrade grade $(DIR) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

# Flag submissions that tamper with grading (see gdgrade/scan.py): make scan DIR=submitted
DIR ?= submitted
scan: $(STAMP)
	$(BIN)/python -m gdgrade scan $(DIR)

clean:
	rm -rf _build
