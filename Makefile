# The two commands of a newcomer:  `make main`  and  `make test`.
# Each creates .venv and installs what it needs on a fresh machine, from requirements/dev.lock:
# the versions CI tests are the versions the images hold (docker/README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.lock
REGISTRY ?=
PUSH ?=
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GIT_PYTHON_REFRESH := quiet
# The dead-code check (vulture; settings in pyproject.toml): the code without the tests, so that
# a function only tests call counts as dead, then with them, for dead test code.
CODE := grmodel components pipelines bench docker vulture_allow.py

.PHONY: main test lint lock lock-check images bench-small clean

# The lock lists every dependency (--no-deps); torch is its CPU build (+cpu), found through pip's
# configuration (a wheel directory or the PyTorch CPU index in PIP_EXTRA_INDEX_URL).
# PYTHONWARNINGS=ignore: setuptools explains editable installs at length on every install.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-deps -r $(LOCK)
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

main: $(STAMP)
	$(BIN)/grmodel main

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/vulture $(CODE)
	$(BIN)/vulture $(CODE) tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --maxprocesses=4 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/vulture $(CODE)
	$(BIN)/vulture $(CODE) tests

# Re-resolve pyproject.toml into requirements/{dev,runtime,gpu}.lock (needs the package index).
# Not on $(STAMP): a stale lock cannot install a venv that `pip check` accepts.
lock lock-check:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet packaging
	$(BIN)/python docker/lock.py $(if $(filter lock-check,$@),--check)

# Build both images (docker or podman); `make images REGISTRY=registry.example.com/team PUSH=1`.
images: $(STAMP)
	PYTHON=$(BIN)/python docker/build.sh $(if $(REGISTRY),--registry $(REGISTRY)) \
		$(if $(filter 1 yes true,$(PUSH)),--push)

clean:
	rm -rf $(VENV) build *.egg-info
