# The README's three commands: `make venv` (set-up), `make demo` (main job), `make test` (tests).
# Each creates the pinned environment on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all lint imports format lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# pysodmetrics (test oracle): --no-deps, its metadata caps numpy and scikit-image below our pins (pyproject.toml)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt pysodmetrics
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/vadapters --help
	HF_HUB_OFFLINE=1 $(BIN)/vadapters demo --quick --out outputs/demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False $(BIN)/python -m pytest -q -m "" --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The import contract (pyproject.toml [tool.importlinter], the layers of docs/architecture.md). pipelines/ and apps/
# install as vadapters.pipelines / vadapters.apps, so the check reads a copy laid out as installed.
imports: $(STAMP)
	rm -rf build/imports && mkdir -p build/imports
	cp -r vadapters build/imports/vadapters
	cp -r pipelines build/imports/vadapters/pipelines
	cp -r apps build/imports/vadapters/apps
	cp -r weights/__init__.py build/imports/vadapters/weights.py
	cd build/imports && PYTHONPATH=. ../../$(BIN)/lint-imports --config ../../pyproject.toml --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^vadapters' > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build dist *.egg-info outputs
