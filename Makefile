# make run   — set up .venv and start aixsmit on this machine's real file systems
# make test  — set up .venv (and, as root, the Debian tools the tests use) and run every test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip install -qq --disable-pip-version-check
# Where man(1) finds aixsmit(8) and aixsmit-NAME(8) after make run: the system's local manual
# as root, the user's own otherwise.
MANDIR ?= $(if $(filter 0,$(shell id -u)),/usr/local/share/man,$(HOME)/.local/share/man)
MANPAGES := $(wildcard aixsmit/man/*.8)

.PHONY: run test deps bench screenshots man clean

# Quietly (pip -qq: errors only): the first thing a new user sees is the product, or the error.
$(STAMP): pyproject.toml
	@echo "aixsmit: setting up $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@$(PIP) -e '.[test]'
	@touch $(STAMP)

$(VENV)/.man: $(MANPAGES) | $(STAMP)
	@mkdir -p $(MANDIR)/man8
	@rm -f $(MANDIR)/man8/aixsmit.8 $(MANDIR)/man8/aixsmit-*.8
	@install -m 644 $(MANPAGES) $(MANDIR)/man8/
	@touch $@

# Bytecode written ahead (in a moment when nothing changed): an editable install has none, and
# where PYTHONDONTWRITEBYTECODE is set Python compiles the package anew at every start (20 ms).
run: $(STAMP) $(VENV)/.man
	@$(PY) -m compileall -q aixsmit
	@$(VENV)/bin/aixsmit $(ARGS)

# The manual pages, generated again from the parsers (after a command's options changed).
man: $(STAMP)
	@$(PY) -m aixsmit.manpages

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
