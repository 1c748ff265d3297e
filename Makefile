# Conveniences; the README's Quickstart needs none of this.
PY ?= python3
VENV ?= .venv
OUT ?= dist/cwalld

BUILD ?= build

.PHONY: dist bench chaos

# dist/cwalld: one executable file (PyInstaller) holding the Python interpreter, cwalld and its
# dependencies; it needs no Python on the machine, only glibc 2.36+ (Debian 12+) and zlib, and
# unpacks itself under $$TMPDIR at each start. dist/config.toml: the example with the service's
# paths, the one source of them (the unit sets none).
dist:
	test -x $(VENV)/bin/pyinstaller || ($(PY) -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[dist]')
	$(VENV)/bin/pyinstaller --onefile --strip --noconfirm --log-level ERROR --name $(notdir $(OUT)) \
	  --distpath $(dir $(OUT)) --workpath $(BUILD)/pyinstaller --specpath $(BUILD) \
	  --collect-data cwalld --collect-submodules cwalld --collect-data tzdata cwalld/__main__.py
	sed -e 's|^path = "./data/cwall.db"  |path = "/var/lib/cwalld/cwall.db"|' \
	    -e 's|^control_socket = ""        |control_socket = "/run/cwalld/control.sock"|' \
	    config.toml.example > $(dir $(OUT))config.toml

# The chaos suite: faults against real daemons under load; a table of lost/duplicated/5xx.
chaos:
	test -x $(VENV)/bin/cwalld || ($(PY) -m venv $(VENV) && $(VENV)/bin/pip install -q -e .)
	$(VENV)/bin/python -m bench.chaos $(ARGS)

# The whole-daemon benchmark; e.g. make bench ARGS="--rows 1000000"
bench:
	test -x $(VENV)/bin/cwalld || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[bench]'  # the openai client, for the AI adapter comparison rows
	$(VENV)/bin/python -m bench $(ARGS)
