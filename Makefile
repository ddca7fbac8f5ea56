# The two quick-start commands of the README. Each sets itself up on a fresh clone:
#   make train   - a virtual environment, the install, the data, then a training run
#   make test    - the same set-up, then the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: train test data

train: $(VENV)/.installed data
	$(BIN)/mnistcls train --config fast_fashion.yaml --dataset fashion

test: $(VENV)/.installed data
	$(BIN)/python -m pytest -q

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist where we may install packages
# (root, e.g. CI); elsewhere mnistcls finds or downloads the data itself.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	    || echo "note: could not install dataset-fashion-mnist; tests on the real data will be skipped"; \
	fi
