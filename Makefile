# The two quick-start commands of the README. Each sets itself up on a fresh clone:
#   make train   - a virtual environment, mnistcls and what training needs, the data, then a training run
#   make test    - the same, plus what the tests need (exporters, runtimes, the PostgreSQL driver), then
#                  the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: train test data

train: $(VENV)/.installed data
	$(BIN)/mnistcls train --config fast_fashion.yaml --dataset fashion

test: $(VENV)/.installed-test data
	$(BIN)/python -m pytest -q

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist where we may install packages
# (root, e.g. CI); elsewhere mnistcls finds or downloads the data itself, and the
# tests of the real data are skipped (the suite's last line says how many).
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	    || echo "note: could not install dataset-fashion-mnist; tests on the real data will be skipped"; \
	fi
