# Two commands on a fresh machine:
#   make run    creates .venv, installs, migrates, starts API + pipeline with demo cameras
#   make test   installs what the suite needs (Python and Debian packages), runs every check
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= test,yolo,cluster
export VMS_DEMO ?= 1
# Demo footage and the detector models (VMS_MODELS_DIR defaults to <this>/models).
export VMS_SAMPLE_MEDIA_DIR ?= $(abspath ../shared/sample_media)

.PHONY: run test check lint typecheck imports pytest pytest-sqlite pytest-postgres install \
        system-deps bench clean ui-screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch/torchvision are pinned to the CPU-compatible pair that installs offline here (see
# shared/sample_media/SOURCES.md); ultralytics comes with the `yolo` extra.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[$(EXTRAS)]' 
	@# ultralytics pulls in the GUI build of OpenCV, which shares the cv2 module with the
	@# headless build we use: keep exactly one of them.
	@if $(BIN)/pip show -q opencv-python >/dev/null 2>&1; then \
	  $(BIN)/pip uninstall -q -y opencv-python && \
	  $(BIN)/pip install -q --force-reinstall --no-deps \
	    "opencv-python-headless==$$($(BIN)/pip show opencv-python-headless | awk '/^Version/{print $$2}')"; \
	fi
	touch $@

install: $(STAMP)

system-deps:
	@scripts/system-deps

run: install
	@scripts/system-deps || echo "make run: continuing without the RTSP packages (demo uses file sources)"
	$(BIN)/vms serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

# The layers of ../shared/STYLE.md (contracts in pyproject.toml).
imports: install
	$(BIN)/lint-imports

pytest-sqlite: install system-deps
	$(BIN)/pytest

pytest-postgres: install system-deps
	scripts/with-postgres $(BIN)/pytest -m "not nodb"

check: lint typecheck imports

test: install system-deps check pytest-sqlite pytest-postgres

# The web interface's screenshots in docs/ui/ (a browser test that keeps its pictures).
ui-screenshots: install system-deps
	PYTHON=$(BIN)/python scripts/ui-screenshots

bench: install system-deps
	$(BIN)/python bench/masking.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/retention.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
