# make run   — set up .venv and start aixsmit on this machine's real file systems
# make test  — set up .venv (and, as root, the Debian tools the tests use) and run every test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test deps bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Bytecode written ahead (in a moment when nothing changed): an editable install has none, and
# where PYTHONDONTWRITEBYTECODE is set Python compiles the package anew at every start (20 ms).
run: $(STAMP)
	@$(PY) -m compileall -q aixsmit
	$(VENV)/bin/aixsmit $(ARGS)

# Tools from Debian's packages that tests drive for real (installed only when missing, as root).
deps:
	@sh scripts/install-deps

test: $(STAMP) deps
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# make bench: every benchmark, backups on the 50,000-file tree (see bench/README.md for times);
# BENCH_ROWS=all make bench adds the 1 GB tree, a copy of /usr and 1,000,000 files (cached).
bench: $(STAMP) deps
	@$(PY) -m compileall -q aixsmit
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

screenshots: $(STAMP)
	$(PY) -m aixsmit.tui.screenshots screenshots

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
