# teddywatch: `make run` (lean runtime, no torch) and `make test` (everything) on a fresh machine.
PYTHON ?= python3.11
DEV_VENV := .venv
RUN_VENV := .venv-run
DATA ?= ../shared/data

.PHONY: setup setup-run run test bench bundle model clean

# Full development environment: fastai + torch (from this machine's disk), test tools, PyInstaller.
$(DEV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEV_VENV)/bin/python -m pip install -e '.[fastai,dev,bundle]'
	$(DEV_VENV)/bin/python -m pip install -q 'PyGObject<3.51' 'dbus-python>=1.3' || \
	  echo "note: no PyGObject/dbus-python (needs the system packages in README.md); tray tests will be skipped"
	touch $@

# The lean runtime users run: onnxruntime + Pillow + watchdog + pystray + plyer, no torch.
$(RUN_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install -q --upgrade pip
	$(RUN_VENV)/bin/python -m pip install -q -e .
	$(RUN_VENV)/bin/python -m pip install -q 'PyGObject<3.51' 'dbus-python>=1.3' || \
	  echo "note: tray menu and notifications need PyGObject and dbus-python; see README.md (Linux desktop)"
	touch $@

setup: $(DEV_VENV)/.installed

setup-run: $(RUN_VENV)/.installed

run: setup-run
	$(RUN_VENV)/bin/teddywatch run

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
