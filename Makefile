# The two set-up commands of the README are `make demo` and `make test`; everything they
# need is installed from this repository's files (Python lock, Go/Maven pins, Airflow lock).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: venv demo test unit integration lint typecheck crds up down clean

$(BIN)/eventpipeline: pyproject.toml devtools/pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	# The local stack and the `dev` / `demo` commands: a development package, not in the operator's wheel.
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e devtools
	touch $@

venv: $(BIN)/eventpipeline

## Main job: the local stack, the operator and an example pipeline whose messages become DAG runs.
## `make demo DEMO_ARGS="--with prometheus"` adds the local Prometheus and prints its URL.
demo: venv
	$(BIN)/eventpipeline demo $(DEMO_ARGS)

## The whole suite: lint, types, unit tests, then integration tests against the real local stack.
test: venv image-tools lint typecheck
	$(BIN)/pytest -p no:cacheprovider -ra tests

unit: venv
	$(BIN)/pytest -ra tests/unit

integration: venv
	$(BIN)/pytest -ra tests/integration

lint: venv
	$(BIN)/ruff check operator devtools tests bench airflow-provider-eventpipeline
	$(BIN)/ruff format --check operator devtools tests bench airflow-provider-eventpipeline
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy
	# The Airflow provider, strict, against Airflow's own types: mypy runs with the interpreter of
	# the local stack's Airflow environment (installed first if needed), where Airflow is.
	$(BIN)/mypy --config-file airflow-provider-eventpipeline/pyproject.toml \
	  --python-executable "$$($(BIN)/python -m eventpipeline_devenv.airflow)"

crds: venv
	$(BIN)/eventpipeline crds --output crds
	cp crds/*.yaml charts/eventpipeline-operator/crds/
	$(BIN)/python -m eventpipeline.apidocs docs/api-reference.md

up: venv
	$(BIN)/eventpipeline dev up

down: venv
	$(BIN)/eventpipeline dev down

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -o requirements/runtime.lock

.PHONY: apidocs

## Regenerate docs/api-reference.md from the API models (a unit test fails when it is stale).
apidocs: venv
	$(BIN)/python -m eventpipeline.apidocs docs/api-reference.md


.PHONY: image-tools

## Debian packages of the image test (tests/integration/charts/test_image.py): buildah builds the
## Dockerfile without a Docker engine, debootstrap makes its base image. Needs root, as CI has.
image-tools:
	@command -v buildah >/dev/null && command -v debootstrap >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap; }
