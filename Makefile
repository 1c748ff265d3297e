# Conveniences; the README's Quickstart needs none of this.
PY ?= python3
VENV ?= .venv
OUT ?= dist/cwalld

BUILD ?= build
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' cwalld/__init__.py)
DEB ?= $(dir $(OUT))cwalld_$(VERSION)_amd64.deb

.PHONY: dist deb bench chaos

# dist/cwalld: one executable file (PyInstaller) holding the Python interpreter, cwalld and its
# dependencies; it needs no Python on the machine, only glibc 2.36+ (Debian 12+) and zlib, and
# unpacks itself under $$TMPDIR at each start. dist/config.toml: the example with the service's
# paths, the one source of them (the unit sets none).
dist:
	test -x $(VENV)/bin/pyinstaller || ($(PY) -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[dist]')
	$(VENV)/bin/pyinstaller --onefile --strip --noconfirm --log-level ERROR --name $(notdir $(OUT)) \
	  --distpath $(dir $(OUT)) --workpath $(BUILD)/pyinstaller --specpath $(BUILD) \
	  --collect-data cwalld --collect-submodules cwalld --collect-data tzdata \
	  $$(for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png; do \
	     echo --add-data "$$($(VENV)/bin/python -c 'import importlib.util as u; print(u.find_spec("swagger_ui").submodule_search_locations[0])')/static/$$f:swagger_ui/static"; done) \
	  cwalld/__main__.py
	sed -e 's|^path = "./data/cwall.db"  |path = "/var/lib/cwalld/cwall.db"|' \
	    -e 's|^control_socket = ""        |control_socket = "/run/cwalld/control.sock"|' \
	    config.toml.example > $(dir $(OUT))config.toml

# dist/cwalld_<version>_amd64.deb: the executable, the unit, /etc/cwalld/config.toml (a conffile)
# and a README; installing enables and starts the service, remove keeps the data, purge deletes it.
deb: dist
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/DEBIAN
	install -D -m 0755 $(OUT) $(BUILD)/deb/usr/bin/cwalld
	install -D -m 0644 systemd/cwalld.service $(BUILD)/deb/usr/lib/systemd/system/cwalld.service
	install -D -m 0644 $(dir $(OUT))config.toml $(BUILD)/deb/etc/cwalld/config.toml
	install -D -m 0644 packaging/debian/README $(BUILD)/deb/usr/share/doc/cwalld/README
	install -m 0644 packaging/debian/conffiles $(BUILD)/deb/DEBIAN/
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm $(BUILD)/deb/DEBIAN/
	sed -e 's/@VERSION@/$(VERSION)/' -e "s/@SIZE@/$$(du -sk $(BUILD)/deb | cut -f1)/" \
	    packaging/debian/control > $(BUILD)/deb/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(BUILD)/deb $(DEB)

# The chaos suite: faults against real daemons under load; a table of lost/duplicated/5xx.
chaos:
	test -x $(VENV)/bin/cwalld || ($(PY) -m venv $(VENV) && $(VENV)/bin/pip install -q -e .)
	$(VENV)/bin/python -m bench.chaos $(ARGS)

# The whole-daemon benchmark; e.g. make bench ARGS="--rows 1000000"
bench:
	test -x $(VENV)/bin/cwalld || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[bench]'  # the openai client, for the AI adapter comparison rows
	$(VENV)/bin/python -m bench $(ARGS)
