# Two commands for a fresh clone: `make serve` and `make test`. Both set up
# .venv first (idempotent: pip runs again only when pyproject.toml changes).
VENV    := .venv
BIN     := $(CURDIR)/$(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install serve test gen lint-proto audit

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Fetching is best-effort: offline, `classify serve` falls back to the bundled
# pretrained model and says so loudly. Serving itself never downloads.
serve: install
	$(BIN)/classify weights fetch resnet18 || echo "make serve: continuing without ResNet18 weights"
	$(BIN)/classify serve

test: install
	$(BIN)/python -m pytest

gen: install
	$(BIN)/buf generate

lint-proto: install
	$(BIN)/buf lint
	$(BIN)/buf format --exit-code --diff

# Known-vulnerability audit of everything installed in .venv (needs pypi.org's JSON API).
audit: install
	$(BIN)/pip-audit --progress-spinner off --skip-editable
