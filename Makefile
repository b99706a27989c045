# deploybench: two commands set everything up on a fresh machine.
#   make demo   builds .venv, installs, runs the main job (every deployment on digits)
#   make test   builds .venv, installs (with the optional Ray extra), runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The optional Ray Serve extra (the rayserve target): installed for the tests and lint,
# not for the demo, which does not measure rayserve.
STAMP_RAY := $(VENV)/.installed-ray
OUT ?= results/demo

.PHONY: setup demo suite test lint check stubs docs clean

$(STAMP): pyproject.toml
	@# A file, not a folder, at .venv is a tool's redirect (tox's): the venv goes there.
	@if [ -f $(VENV) ]; then rm -f $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,aws]'
	touch $(STAMP)

$(STAMP_RAY): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,aws,ray]'
	touch $(STAMP_RAY)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/deploybench run --targets inprocess,flask,fastapi,grpc,lambda --bundle digits --scenario quick \
		--out $(OUT)

# The built-in standard suite (docs/suites.md), in results/suites/standard-TIMESTAMP unless
# OUT=DIR is given (OUT's default is the demo's folder): an existing suite folder resumes.
suite: $(STAMP)
	$(BIN)/deploybench suite standard $(if $(filter command line environment,$(origin OUT)),--out $(OUT))

test: $(STAMP_RAY)
	$(BIN)/pytest

# With Ray: mypy checks the rayserve target against Ray's own type hints.
lint: $(STAMP_RAY)
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
