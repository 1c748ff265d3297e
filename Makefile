# Conveniences; the README's Quickstart needs none of this.
PY ?= python3
VENV ?= .venv
OUT ?= dist/cwalld

.PHONY: dist bench chaos

# dist/cwalld: one executable file (a shiv zipapp) holding cwalld and its dependencies, run by
# the system python3 (3.11+). It unpacks itself under ~/.shiv, or $SHIV_ROOT, on first start.
dist:
	test -x $(VENV)/bin/shiv || ($(PY) -m venv $(VENV) && $(VENV)/bin/pip install -q shiv)
	mkdir -p $(dir $(OUT))
	$(VENV)/bin/shiv -q -c cwalld -o $(OUT) -p '/usr/bin/env python3' --compressed .

# The chaos suite: faults against real daemons under load; a table of lost/duplicated/5xx.
chaos:
	test -x $(VENV)/bin/cwalld || ($(PY) -m venv $(VENV) && $(VENV)/bin/pip install -q -e .)
	$(VENV)/bin/python -m bench.chaos $(ARGS)

# The whole-daemon benchmark; e.g. make bench ARGS="--rows 1000000"
bench:
	test -x $(VENV)/bin/cwalld || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[bench]'  # the openai client, for the AI adapter comparison rows
	$(VENV)/bin/python -m bench $(ARGS)
