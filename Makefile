# edge-sr: `make demo` and `make test` set up everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA ?= ../shared/datasets
export EDGE_SR_DATA ?= $(abspath $(DATA))
STAMP := $(VENV)/.installed
PEERS ?= ../shared/peers/opencv_dnn_superres

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast train train-x3 train-transfer evaluate quantize bench benchmarks \
        wheelhouse deploy-pi pi-report deploy-fleet fleet-inventory undeploy-pi standin-pi standin-clean clean

help:
	@echo "make demo        create .venv, install, stream the built-in demo scene for 5 s (reports/demo.json)"
	@echo "make test        the whole test suite (what CI runs); make test-fast skips the slow tests"
	@echo "make install     only create .venv and install (pins: constraints.txt)"
	@echo "make train       FSRCNN and FSRCNN-s: x3 from scratch, then x2 and x4 by transfer (TRAINING.md)"
	@echo "make evaluate    Set5/Set14 PSNR/SSIM of the shipped weights -> results/evaluation.json, README"
	@echo "make quantize    FP32 and INT8 ONNX/TFLite artifacts with model cards -> edge_runtime/models/"
	@echo "make bench       edge-sr bench on this machine, with OpenCV's models (reports/bench/)"
	@echo "make benchmarks  the speed measurements behind the README's tables (BENCHMARKS.md)"
	@echo "make deploy-pi PI=user@host   wheelhouse, release and service on a Pi (deploy/README.md)"
	@echo "make pi-report PI=user@host   on-device fps/PSNR report -> reports/<host>/"
	@echo "make deploy-fleet INVENTORY=hosts.ini   deploy-pi and pi-report for every host"
	@echo "DATA=/path (or EDGE_SR_DATA) points at the data sets; default $(DATA)"

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

# The paper's recipe: x3 from scratch, then x2/x4 by fine-tuning the deconvolution only, then all
# layers briefly. The shipped weights were trained with these defaults (TRAINING.md). A run writes to
# $(WEIGHTS) only what beats the weights already there (each run's own best: runs/.../<id>/best.pt);
# `make train WEIGHTS=runs/weights` keeps a from-scratch chain apart from the shipped weights.
WEIGHTS ?= training/weights
FAMILIES ?= fsrcnn fsrcnn-s
X3_ITERS_fsrcnn ?= 45000
X3_ITERS_fsrcnn-s ?= 120000
DECONV_ITERS ?= 1500
FINETUNE_ITERS ?= 2500
train-x3: $(STAMP)
	for m in $(FAMILIES); do \
	  $(PY) -m training.train --model $$m --scale 3 --iters $$( [ $$m = fsrcnn ] && echo $(X3_ITERS_fsrcnn) || echo $(X3_ITERS_fsrcnn-s) ) \
	    --out-dir $(WEIGHTS) --resume || exit 1; \
	done

train-transfer: $(STAMP)
	for m in $(FAMILIES); do for s in 2 4; do \
	  $(PY) -m training.train --model $$m --scale $$s --iters $(DECONV_ITERS) --train-only deconv \
	    --deconv-lr-mult 1 --init-from $(WEIGHTS)/$${m}_x3.pt --run-dir runs/deconv --out-dir $(WEIGHTS) || exit 1; \
	  $(PY) -m training.train --model $$m --scale $$s --iters $(FINETUNE_ITERS) --lr 2e-4 \
	    --init-from runs/deconv/$${m}_x$$s/best.pt --run-dir runs/all --out-dir $(WEIGHTS) || exit 1; \
	done; done

train: train-x3 train-transfer

evaluate: $(STAMP)
	$(PY) -m training.evaluate --json results/evaluation.json --markdown results/evaluation.md
	$(PY) scripts/plot_curves.py
	$(PY) scripts/update_readme.py

MODELS ?= $(foreach m,$(FAMILIES),$(m)_x2 $(m)_x3 $(m)_x4)
quantize: $(STAMP)
	$(PY) -m quantize.build --models $(MODELS)
	$(PY) scripts/update_readme.py

bench: $(STAMP)
	$(VENV)/bin/edge-sr bench --data-dir $(EDGE_SR_DATA) --opencv-models $(PEERS) --out reports/bench

benchmarks: $(STAMP)
	$(PY) benchmarks/training_speed.py
	$(PY) benchmarks/artifacts.py
	$(PY) benchmarks/int8_forms.py
	$(PY) benchmarks/int8_layer_costs.py
	$(PY) benchmarks/onnx_int8_heads.py
	$(PY) benchmarks/large_photo.py
	$(PY) benchmarks/self_ensemble.py
	$(PY) benchmarks/stream_targets.py --opencv-models $(PEERS)
	$(PY) scripts/update_readme.py

# --- Raspberry Pi deployment (deploy/README.md) ---
PI ?=
INVENTORY ?=
WHEELHOUSE ?= build/wheelhouse-aarch64
PI_PLATFORM ?= aarch64
# An inventory ansible cannot parse is an error, not a run against no hosts.
ANSIBLE := ANSIBLE_INVENTORY_UNPARSED_FAILED=true $(VENV)/bin/ansible-playbook
PI_INVENTORY := build/inventory-pi.ini
REPORTS ?= reports

wheelhouse: $(STAMP)
	PYTHON=$(PY) deploy/build_wheelhouse.sh $(WHEELHOUSE) $(PI_PLATFORM)

$(PI_INVENTORY): FORCE
	@test -n "$(PI)" || { echo "usage: make $(MAKECMDGOALS) PI=user@host" >&2; exit 2; }
	@mkdir -p build
	@user=$$(echo "$(PI)" | sed -n 's/@.*//p'); host=$${PI#*@}; \
	  echo "$$host ansible_host=$$host $${user:+ansible_user=$$user} $(PI_VARS)" > $@
FORCE:

deploy-pi: $(PI_INVENTORY) wheelhouse  # PI checked before the wheelhouse is built
	$(ANSIBLE) -i $(PI_INVENTORY) deploy/ansible/deploy.yml -e wheelhouse=$(abspath $(WHEELHOUSE))

pi-report: $(PI_INVENTORY)
	$(ANSIBLE) -i $(PI_INVENTORY) deploy/ansible/report.yml -e reports_dir=$(abspath $(REPORTS))

undeploy-pi: $(PI_INVENTORY)
	$(ANSIBLE) -i $(PI_INVENTORY) deploy/ansible/undeploy.yml

fleet-inventory: FORCE
	@test -n "$(INVENTORY)" || { echo "usage: make deploy-fleet INVENTORY=hosts.ini" >&2; exit 2; }
	@test -f "$(INVENTORY)" || { echo "make deploy-fleet: inventory not found: $(INVENTORY)" >&2; exit 2; }

deploy-fleet: fleet-inventory wheelhouse
	$(ANSIBLE) -i $(INVENTORY) --forks 20 deploy/ansible/deploy.yml -e wheelhouse=$(abspath $(WHEELHOUSE))
	$(ANSIBLE) -i $(INVENTORY) --forks 20 deploy/ansible/report.yml -e reports_dir=$(abspath $(REPORTS))
	$(PY) deploy/fleet_table.py $(REPORTS)

# An emulated arm64 Pi on this machine (root; deploy/standin_pi.py): boots until Ctrl-C and prints the
# PI=... PI_VARS=... to deploy to it. CPU=cortex-a76 for a Pi 5.
CPU ?= cortex-a72
standin-pi:
	$(PYTHON) deploy/standin_pi.py up --cpu $(CPU)

# What a killed `make test` or `make standin-pi` left running (guest, network namespace, scratch files).
standin-clean:
	$(PYTHON) deploy/standin_pi.py clean

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
