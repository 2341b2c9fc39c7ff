# edge-sr: `make demo` and `make test` set up everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA ?= ../shared/datasets
export EDGE_SR_DATA ?= $(abspath $(DATA))
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast train train-x3 train-transfer evaluate quantize bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[train,quantize,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge-sr --demo --seconds 5 --report reports/demo.json

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The paper's recipe: x3 from scratch, then x2/x4 by fine-tuning the deconvolution only, then all layers briefly.
ITERS ?= 100000
TRANSFER_ITERS ?= 20000
train-x3: $(STAMP)
	$(PY) -m training.train --model fsrcnn --scale 3 --iters $(ITERS) --resume
	$(PY) -m training.train --model fsrcnn-s --scale 3 --iters $(ITERS) --resume

train-transfer: $(STAMP)
	for m in fsrcnn fsrcnn-s; do for s in 2 4; do \
	  $(PY) -m training.train --model $$m --scale $$s --iters $(TRANSFER_ITERS) --train-only deconv \
	    --init-from training/weights/$${m}_x3.pt --run-dir runs/deconv || exit 1; \
	  $(PY) -m training.train --model $$m --scale $$s --iters $(TRANSFER_ITERS) --lr 1e-4 \
	    --init-from training/weights/$${m}_x$$s.pt --run-dir runs/all || exit 1; \
	done; done

train: train-x3 train-transfer

evaluate: $(STAMP)
	$(PY) -m training.evaluate --json results/evaluation.json --markdown results/evaluation.md
	$(PY) -m edge_runtime.readme_tables README.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
