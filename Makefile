# Two commands on a fresh clone: `make demo` and `make test`. Both bootstrap a small tools
# virtualenv (.venv-tools with nox + uv); nox then builds each session's environment.
PYTHON ?= python3
TOOLS := .venv-tools
NOX := $(TOOLS)/bin/nox

.PHONY: demo test lint typecheck build bench tools clean

$(NOX):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "nox>=2024.4" "uv>=0.4"

tools: $(NOX)

demo: $(NOX)
	$(NOX) -s demo

test: $(NOX)
	$(NOX) -s lint typecheck docs tests build

lint: $(NOX)
	$(NOX) -s lint

typecheck: $(NOX)
	$(NOX) -s typecheck

build: $(NOX)
	$(NOX) -s build

bench: $(NOX)
	$(NOX) -s bench

clean:
	rm -rf $(TOOLS) .nox .venv
