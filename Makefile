# Two commands do everything on a fresh machine:  make demo  |  make test
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
QUIET_PIP := { grep -v '^WARNING: Location' || true; }
NB := $(basename $(notdir $(wildcard notebooks/[0-9][0-9]_*.py)))

OLD := .venv-oldest
OLD_STAMP := $(OLD)/.installed-$(shell cat requirements.txt pyproject.toml .ci/oldest.txt | cksum | cut -d' ' -f1)

.PHONY: install test test-oldest demo world notebooks report clean-runs release wheelhouse
install: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt pytest 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install -q -e . 2>&1 | $(QUIET_PIP)
	rm -f $(VENV)/.installed-* && touch $@

test: install  ## unit tests, then every notebook executed on a small mini-world
	$(BIN)/python -m pytest

$(OLD_STAMP): requirements.txt pyproject.toml .ci/oldest.txt
	test -x $(OLD)/bin/python || $(PY) -m venv $(OLD)
	$(OLD)/bin/python -m pip install -q -c .ci/oldest.txt -r requirements.txt pytest 2>&1 | $(QUIET_PIP)
	$(OLD)/bin/python -m pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	rm -f $(OLD)/.installed-* && touch $@

test-oldest: $(OLD_STAMP)  ## the fast tests on the oldest supported torch/torchvision (.ci/oldest.txt)
	$(OLD)/bin/python -m pytest -m "not slow" -p no:cacheprovider

world: install
	$(BIN)/python -m fewshot world make --out data/miniworld
	$(BIN)/python -m fewshot world make-tasks --out data/tasks --tasks shape colour count position style

demo: world  ## the whole suite on the mini-world: notebooks/executed/, runs/miniworld/ (report in runs/miniworld/report/)
	$(BIN)/python -m fewshot.notebooks.runner --out notebooks/executed --config miniworld $(NB)

report: install  ## refresh the committed report/ from the demo's run (an explicit step: make demo leaves tracked files alone)
	$(BIN)/python -m fewshot report --run runs/miniworld --out report

release:  ## dist/fewshot-suite.zip: the committed suite (git archive of HEAD) for Colab/ModelArts without GitHub
	$(PY) -m fewshot.notebooks.release archive

TORCH_INDEX ?=
wheelhouse:  ## dist/wheelhouse-py310.zip: every wheel for ModelArts offline (TORCH_INDEX=https://download.pytorch.org/whl/cu118 for drivers < 525)
	$(PY) -m fewshot.notebooks.release wheelhouse --python 3.10 $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX))

clean-runs:
	rm -rf runs cache notebooks/executed
