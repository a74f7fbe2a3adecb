# The README's three commands: `make venv` (set-up), `make demo` (main job), `make test` (tests).
# Each creates the pinned environment on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all lint format lock clean

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

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^vadapters' > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build dist *.egg-info outputs
