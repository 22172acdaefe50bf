# Thin targets over `python -m replicate`.  Users set DATA_ROOT, CKPT_ROOT, RUNS_ROOT and the
# cluster profile (CLUSTER=<slurm/clusters/NAME.yaml>, EXECUTOR=slurm|local); nothing else.
SHELL := /bin/bash
PYTHON ?= python3
# two exact environments (replicate/environments.py): .venv = classification (FGVC, VTAB-1k,
# demo, sweeps; requirements/base.lock, current torch), .venv-seg = segmentation (ADE20K;
# requirements/seg.lock, torch 2.1 + mmcv ops + mmseg)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SEG_VENV ?= .venv-seg
SEG_PY := $(SEG_VENV)/bin/python
SEG_PIP := $(SEG_PY) -m pip
EXECUTOR ?= local
CLUSTER ?= default
# pinned: the paper's own hyper-parameters; search: grid on val + final runs; smoke: tiny
# configs.  Empty: the paper's DEFAULT_MODE (papers/<p>/paper.py), chosen by the CLI
MODE ?=
mode_arg = $(if $(MODE),--mode $(MODE))
# runs per process: a cell's 5 seeds share one process, its decoded data and backbone (a pack
# that would not fit the GPU falls back to one run at a time, with the estimate in the log)
PACK ?= 5
STAMP := $(VENV)/.installed
SEG_STAMP := $(SEG_VENV)/.installed
MMCV_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install install-seg install-all test demo doctor bench clean \
        reproduce-gatevpt-ade20k \
        data-fgvc-splits data-vtab data-verify slurm-up slurm-down

install: $(STAMP)                ## classification environment .venv: current torch, timm, mmengine, submitit (minutes)
$(STAMP): requirements/base.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip<25"
	# a .venv from before the environments were split holds mmcv built for torch 2.1
	$(PIP) uninstall -q -y mmcv mmsegmentation 2>/dev/null || true
	$(PIP) install -q -r requirements/base.lock
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, timm, mmengine, submitit; print('classification environment:', torch.__version__)"
	touch $@

install-seg: $(SEG_STAMP)        ## segmentation environment .venv-seg: torch 2.1 + mmcv ops (built once if no wheel fits; pip caches it) + mmseg
$(SEG_STAMP): requirements/seg.lock pyproject.toml
	test -x $(SEG_PY) || $(PYTHON) -m venv $(SEG_VENV)
	$(SEG_PIP) install -q --upgrade "pip<25"
	# --no-deps: the lock is complete (pip freeze); letting pip resolve mmcv's open ranges pulls
	# numpy 2, which torch 2.1 cannot import.  mmcv last: its setup.py imports the installed torch
	$(SEG_PIP) install -q --no-deps -r <(grep -vE '^mmcv==' requirements/seg.lock)
	MMCV_WITH_OPS=1 MAX_JOBS=$(MMCV_JOBS) $(SEG_PIP) install --no-deps --no-build-isolation \
	    $$(grep -E '^mmcv==' requirements/seg.lock)
	$(SEG_PIP) install -q --no-deps --no-build-isolation -e .
	$(SEG_PY) -c "import numpy, torch, mmcv.ops, mmseg; assert numpy.__version__.startswith('1.'); print('segmentation environment:', torch.__version__)"
	touch $@

install-all: install install-seg

test: install-all                ## both environments, local SLURM up (root): classification suite in .venv, seg tests in .venv-seg
	bash tests/run.sh

demo: install                    ## micro pre-trained ViTs (cached) + digits through plan -> run -> collect -> compare (smoke)
	$(PY) -m replicate demo

doctor: install                  ## checks both environments (.venv, .venv-seg: VENV / SEG_VENV), CUDA, data, checkpoints, SLURM
	REPLICATE_CLS_PYTHON=$(abspath $(PY)) REPLICATE_SEG_PYTHON=$(abspath $(SEG_PY)) $(PY) -m replicate doctor

bench: install
	$(PY) benchmarks/step.py
	$(PY) benchmarks/input_pipeline.py

# any paper folder under papers/ (discovered: no per-paper target); `make plan-<p>` lists them
# for an unknown <p>
plan-%: install
	$(PY) -m replicate plan --paper $* $(mode_arg) --pack $(PACK)

reproduce-%: install
	$(PY) -m replicate reproduce --paper $* $(mode_arg) --executor $(EXECUTOR) --cluster $(CLUSTER) --pack $(PACK)

reproduce-gatevpt-ade20k: install install-seg   ## GateVPT Table 3 (SETR-PUP, mmseg; jobs run in .venv-seg); then compare
	$(SEG_PY) -m replicate seg-submit --executor $(EXECUTOR) --cluster $(CLUSTER) --wait
	$(PY) -m replicate compare --paper gatevpt

data-fgvc-splits: install
	$(PY) -m replicate data fgvc-splits --dest "$${DATA_ROOT:?set DATA_ROOT}/fgvc_splits"

data-vtab: install              ## needs `pip install .[tfds]` and TFDS_DIR with the prepared builders
	$(PY) -m replicate data export-vtab --tfds-dir "$${TFDS_DIR:?set TFDS_DIR}" --dest "$${DATA_ROOT:?set DATA_ROOT}/vtab1k" --task all

data-verify: install
	$(PY) -m replicate data verify --root "$${DATA_ROOT:?set DATA_ROOT}"

slurm-up:
	bash slurm/local/start.sh --install
slurm-down:
	bash slurm/local/stop.sh

clean:
	rm -rf smoke .pytest_cache
