# Set-up is part of both targets: on a fresh clone `make demo` or `make test` is all it takes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA := datasets/demo
DEMO_RUN := runs/demo
DEMO_IMAGES ?= 900
# glibc gives freed memory back to the OS after every step by default; eager PyTorch
# then spends its time in page faults (see bench/bench_train_step.py).
export MALLOC_MMAP_THRESHOLD_ ?= 1000000000
export MALLOC_TRIM_THRESHOLD_ ?= 1000000000

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/longteng data synth $(DEMO_DATA) --images $(DEMO_IMAGES) --seed 0 --workers 2
	$(BIN)/longteng data check $(DEMO_DATA)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench_synth.py

clean:
	rm -rf $(DEMO_DATA) $(DEMO_RUN) .pytest_cache
