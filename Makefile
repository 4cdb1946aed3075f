# InvisPose: `make run` starts the embedded default, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/invispose up

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check invispose actors deployments tests
	$(VENV)/bin/mypy invispose

bench: install
	$(VENV)/bin/invispose bench csi --json

clean:
	rm -rf $(VENV) var build *.egg-info
