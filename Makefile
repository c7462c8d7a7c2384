# Two commands: `make demo` (install + run the demo end to end) and `make test` (install + tests).
# torch is installed first from the pinned CPU wheel so no CUDA build is pulled on a CPU machine;
# an already installed torch (e.g. a CUDA one) satisfies the package's `torch>=2.2` and is kept.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install demo test test-fast lint docs wheel-demo bench gpu-check clean

$(BIN)/spikebench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[snntorch,spikingjelly,postgres,nir,fast-gzip,test]"
	$(BIN)/pip install -q --no-deps "spikingjelly==2.0.0"
	touch $(BIN)/spikebench

install: $(BIN)/spikebench

# One worker process: the demo then reproduces bit for bit (the README quotes its table); with
# --workers 2 it is faster, but which trials the pruner stops depends on timing.
demo: install
	$(BIN)/spikebench demo --out results/demo --workers 1

# Every test, slow ones included; PostgreSQL tests run when SPIKEBENCH_TEST_POSTGRES_URL is set
# (.ci/run sets it), CUDA tests when a GPU is present. The example plug-ins (a backend, a data
# source, a rule) are installed as a third party would and their own tests run too.
test: install
	$(BIN)/pip install -q --no-deps ./examples/spikebench-torchscript
	$(BIN)/pip install -q --no-deps ./examples/spikebench-example-source
	$(BIN)/pip install -q --no-deps ./examples/spikebench-example-rule
	# Norse as a real third-party NIR importer in the tests (--no-deps: it would pull a CUDA torch)
	$(BIN)/pip install -q --no-deps "norse==1.1.0"
	# NeuroBench cross-checks spikebench's NeuroBench metrics (--no-deps: it would pull
	# torchaudio and tonic, which the metrics it runs do not import)
	$(BIN)/pip install -q --no-deps "neurobench==2.3.0"
	# medmnist's own INFO for the medmnist data source (read as data, never imported; --no-deps:
	# it would pull torchvision and a CUDA torch); the source works without it
	$(BIN)/pip install -q --no-deps "medmnist==3.0.2"
	$(BIN)/python -m pytest -q --timeout 900 tests examples/spikebench-torchscript/tests \
	  examples/spikebench-example-source/tests examples/spikebench-example-rule/tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not cuda"

# ruff (with McCabe complexity <= 12), mypy (the whole package; strict on the public API and
# the plug-in contracts: [tool.mypy] in pyproject.toml) and the layering guard rails: imports
# only run downwards, no source module over 500 lines.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layering.py

# The documentation site (MkDocs + the API reference from the docstrings) into site/;
# --strict turns every warning (a broken link, a docstring that cannot be found) into an error.
docs: install
	$(BIN)/python -c "import mkdocs, mkdocstrings_handlers.python" 2>/dev/null \
	  || $(BIN)/pip install -q -e ".[docs]"
	# from an empty mirror, as on a clean checkout (docs/hooks.py rebuilds it)
	rm -rf build/docs-src
	$(BIN)/mkdocs build --strict

# Build the sdist and wheel, install the wheel into a fresh venv outside the checkout and run
# the demo from there (what a user of the released package gets).
wheel-demo:
	.ci/wheel-demo $(PYTHON)

bench: install
	$(BIN)/spikebench bench

# On a CUDA machine: the engine and conv benchmarks and a two-trial study on the GPU, into one
# JSON file (device, torch/CUDA versions, each result). Without CUDA: one line, exit 2.
gpu-check: install
	$(BIN)/spikebench bench --gpu-check --json gpu-check.json

clean:
	rm -rf results site build .pytest_cache .ruff_cache .mypy_cache
