# Set-up is part of both targets: on a fresh clone `make demo` or `make test` is all it takes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA := datasets/demo
DEMO_RUN := runs/demo
DEMO_IMAGES ?= 900
DEMO_HOLDOUT := datasets/demo-holdout
DEMO_EPOCHS ?= 4
DEMO_IMAGE_SIZE ?= 160
# glibc gives freed memory back to the OS after every step by default; eager PyTorch
# then spends its time in page faults (see bench/bench_train_step.py).
export MALLOC_MMAP_THRESHOLD_ ?= 1000000000
export MALLOC_TRIM_THRESHOLD_ ?= 1000000000

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[train,dev,dask,heif]'
	touch $(STAMP)

install: $(STAMP)

# The main job end to end: synthesize, check, train (+ calibrate, evaluate), export (with its
# parity gate), then predict photos from a seed the model never saw, with heatmaps.
demo: $(STAMP)
	$(BIN)/longteng data synth $(DEMO_DATA) --images $(DEMO_IMAGES) --seed 0 --workers 2
	$(BIN)/longteng data check $(DEMO_DATA)
	$(BIN)/longteng train $(DEMO_DATA) --out $(DEMO_RUN) --epochs $(DEMO_EPOCHS) --image-size $(DEMO_IMAGE_SIZE) --workers 2
	$(BIN)/longteng export $(DEMO_RUN) --out $(DEMO_RUN)/model.onnx
	$(BIN)/longteng data synth $(DEMO_HOLDOUT) --images 12 --seed 1 --workers 2
	$(BIN)/longteng predict --model $(DEMO_RUN)/model.onnx $(DEMO_HOLDOUT) --explain $(DEMO_RUN)/heatmaps
	@echo "heatmaps: $(DEMO_RUN)/heatmaps/   model: $(DEMO_RUN)/model.onnx (card: $(DEMO_RUN)/model.md)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python bench/bench_synth.py

clean:
	rm -rf $(DEMO_DATA) $(DEMO_HOLDOUT) $(DEMO_RUN) .pytest_cache
