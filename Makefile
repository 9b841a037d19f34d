# Quick start: `make demo` and `make test`. Each builds or updates .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch lies in /opt/wheels on this project's machines; elsewhere pip
# resolves torch from the registry as usual.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "debuggable needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(FIND_LINKS) "torch==2.13.0"
	# animal-mnist declares TensorFlow as a dependency it never needs for its data files.
	$(PIP) install --no-deps "animal-mnist==0.4"
	$(PIP) install $(FIND_LINKS) -e ".[dev,text]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/debuggable demo

# Two workers, whole test files each (module fixtures are built once): 13 min -> 8 min
# on the 2-core CI machine. `make test TEST_WORKERS=0` runs everything in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(PIP) install $(FIND_LINKS) -e ".[dev,text,bench]"
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/glm_path.py

clean:
	rm -rf $(VENV) debuggable-demo .pytest_cache
