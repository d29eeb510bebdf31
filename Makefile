# teddywatch: `make run` (lean runtime, no torch) and `make test` (everything) on a fresh machine.
# Python: the first 3.11 or newer on PATH (packaging/find-python.sh); another with
# `make run PYTHON=/path/to/python3.12`. `make uninstall` undoes `make run` (PURGE=1: your data too).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell sh packaging/find-python.sh 2>/dev/null)
endif
DEV_VENV := .venv
RUN_VENV := .venv-run
BIN_DIR ?= $(HOME)/.local/bin
DATA ?= ../shared/data
# Fails with what was tried and how to pick a Python when none (or too old a one) is found.
CHECK_PYTHON = if [ -z "$(PYTHON)" ]; then sh packaging/find-python.sh >/dev/null; \
	else sh packaging/find-python.sh --check "$(PYTHON)"; fi
VENV_HINT = { echo "error: $(PYTHON) cannot make a virtual environment (Debian/Ubuntu: sudo apt \
	install python3-venv, or python3.X-venv for the version above)"; exit 1; }

.PHONY: setup setup-run install run uninstall which-python test bench bundle model clean

# Full development environment: fastai + torch (from this machine's disk), test tools, PyInstaller.
$(DEV_VENV)/.installed: pyproject.toml
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(DEV_VENV) || $(VENV_HINT)
	$(DEV_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEV_VENV)/bin/python -m pip install -e '.[fastai,dev,bundle]'
	$(DEV_VENV)/bin/python -m pip install -q 'PyGObject<3.51' 'dbus-python>=1.3' || \
	  echo "note: no PyGObject/dbus-python (needs the system packages in README.md); tray tests will be skipped"
	touch $@

# The lean runtime users run: onnxruntime + Pillow + watchdog + pystray + plyer
# + desktop-notifier, no torch.
$(RUN_VENV)/.installed: pyproject.toml
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(RUN_VENV) || $(VENV_HINT)
	$(RUN_VENV)/bin/python -m pip install -q --upgrade pip
	$(RUN_VENV)/bin/python -m pip install -q -e .
	$(RUN_VENV)/bin/python -m pip install -q 'PyGObject<3.51' 'dbus-python>=1.3' || \
	  echo "note: the tray menu needs PyGObject (and plyer's fallback notifications dbus-python); see README.md (Linux desktop)"
	touch $@

setup: $(DEV_VENV)/.installed

setup-run: $(RUN_VENV)/.installed

# The `teddywatch` command for new shells: a link in ~/.local/bin (said so; warns when that folder
# is not on PATH). A file there that is not a link is left alone.
install: setup-run
	@sh packaging/user-install.sh link "$(RUN_VENV)" "$(BIN_DIR)"

run: install
	$(RUN_VENV)/bin/teddywatch run

# Removes the link, the start-at-login entry and .venv-run; says where config and data stay
# (PURGE=1 removes them too; watched and sorted pictures are never touched).
uninstall:
	@sh packaging/user-install.sh uninstall "$(RUN_VENV)" "$(BIN_DIR)" "$(PURGE)"

which-python:
	@$(CHECK_PYTHON)
	@echo "$(PYTHON)"

test: setup
	$(DEV_VENV)/bin/python -m pytest -ra

bench: setup
	$(DEV_VENV)/bin/python bench/run.py --data $(DATA)

bundle: setup
	$(DEV_VENV)/bin/pyinstaller --noconfirm --clean watch.spec

# Rebuild the default model from ../shared/data (models/README.md), then judge it on the held-out
# test split beside the two baselines: the untrained ImageNet head and the model shipped before
# (taken from git at $(SHIPPED)).
SHIPPED ?= ede615b
model: setup
	$(DEV_VENV)/bin/python -m teddywatch.training.default_model --data $(DATA) --out models
	mkdir -p build/shipped
	git show $(SHIPPED):models/bears-int8.onnx > build/shipped/bears-int8.onnx
	git show $(SHIPPED):models/bears-int8.json > build/shipped/bears-int8.json
	$(DEV_VENV)/bin/python bench/model_quality.py --data $(DATA) --shipped build/shipped/bears-int8.onnx \
	  --fastai --mistakes models/bears_mistakes.jpg --update-metadata

clean:
	rm -rf build dist .pytest_cache
