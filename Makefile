# deploybench: two commands set everything up on a fresh machine.
#   make demo   builds .venv, installs, runs the main job (every deployment on digits)
#   make test   builds .venv, installs, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= results/demo

.PHONY: setup demo test lint check stubs docs clean

$(STAMP): pyproject.toml
	@# A file, not a folder, at .venv is a tool's redirect (tox's): the venv goes there.
	@if [ -f $(VENV) ]; then rm -f $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,aws]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/deploybench run --targets inprocess,flask,fastapi,grpc,lambda --bundle digits --scenario quick \
		--out $(OUT)

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

# Regenerate the gRPC stubs after editing targets/grpc/predict.proto (a test checks them).
stubs: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. \
		targets/grpc/predict.proto

# Regenerate docs/cli.md from the CLI's parser (tests/unit/test_clidoc.py checks it).
docs: $(STAMP)
	$(BIN)/python -m harness.clidoc --write

clean:
	rm -rf $(VENV)
