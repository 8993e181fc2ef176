# Quick start: `make train` (set up .venv, train the default conv VAE) and `make test`.
PYTHON ?= python3
VENV := .venv
# Where the data sets are (vaelab reads VAELAB_DATA_DIR): an offline MNIST copy beside the clone when there is one,
# else ./data, where the first run downloads MNIST.
export VAELAB_DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(abspath data))
STAMP := $(VENV)/.installed-stamp

.PHONY: venv train test browser-check constraints clean-logs

venv: $(STAMP)

# Re-installs only when pyproject.toml or constraints.txt changes, so every target is idempotent.
# constraints.txt pins the exact, tested versions of everything pyproject.toml asks for as ranges.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Extra Hydra overrides: make train ARGS="model=vae trainer.max_epochs=3"
train: $(STAMP)
	$(VENV)/bin/python train.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

# TensorBoard in headless Chromium (apt-get install chromium): a small run, sweep and evaluation, then checks of
# the Scalars, Images, HParams and Projector views; screenshots in logs/browser_check/. ARGS="--logdir logs" checks
# existing logs instead.
browser-check: $(STAMP)
	$(VENV)/bin/python tools/browser_check.py $(ARGS)

# Re-resolve the ranges in pyproject.toml in a scratch venv and pin the result (then run the tests).
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# The exact set of packages make and CI install and test (pip install -c constraints.txt -e '.[dev]')."; \
	  echo "# pyproject.toml declares ranges; regenerate this file after changing them: make constraints"; \
	  .venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^vaelab'; } > constraints.txt
	rm -rf .venv-constraints

clean-logs:
	rm -rf logs/train logs/eval
