# cosmos-cli developer tasks. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TINY := .cache/tiny-checkpoints
SHARED ?= ../shared
# Where the CPU build of torch comes from; pip prefers its 2.13.0+cpu over PyPI's (CUDA) 2.13.0.
# Empty (make install TORCH_INDEX=) uses only the configured indexes.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test lint clean

$(BIN)/cosmos-cli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch pinned first, so that nothing pulls a multi-GB CUDA wheel. Without TORCH_INDEX (or a
	# local torch-2.13.0+cpu wheel through pip's find-links), PyPI's torch==2.13.0 is the multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/cosmos-cli

install: $(BIN)/cosmos-cli

demo: install
	$(BIN)/python scripts/make_tiny_checkpoints.py --output $(TINY)
	$(BIN)/cosmos-cli generate --checkpoint-dir $(TINY) --ar-model-dir Cosmos-1.0-Autoregressive-Tiny-Video2World \
		--input $(SHARED)/data/clips/input.mp4 \
		--prompt "A video recorded from a moving vehicle's perspective, capturing roads and buildings." \
		--output-dir outputs/demo --overwrite

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .cache outputs build *.egg-info .pytest_cache .ruff_cache
