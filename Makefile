# Quick start: `make train` (set up .venv, train the default conv VAE) and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: venv train test clean-logs

venv: $(STAMP)

# Re-installs only when pyproject.toml changes, so every target is idempotent.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Extra Hydra overrides: make train ARGS="model=vae trainer.max_epochs=3"
train: $(STAMP)
	$(VENV)/bin/python train.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

clean-logs:
	rm -rf logs/train logs/eval
