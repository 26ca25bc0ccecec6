# Two commands for users: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint clean compare-timm-env

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: this exact version resolves to the CPU wheel on the build machines (no multi-GB download)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[onnx,tflite,openvino,serve,eval,ray,compare,triton,video,test]"
	# [sign] in a run of its own: pip cannot resolve it together with [tflite] (see pyproject.toml); litert's xdsl
	# imports and converts with the newer typing-extensions it brings (tests/test_tflite*.py pass with it)
	$(PY) -m pip install -q -e ".[sign]"
	# Triton: the server bundled in nvidia-pytriton (--no-deps: its metadata pins numpy<2 for the whole venv, and only
	# its server files are used), and numpy<2 for that server's Python-backend stub alone (README, Triton)
	$(PY) -m pip install -q --no-deps nvidia-pytriton==0.7.0
	$(PY) -m pip install -q --no-deps --upgrade --target "$$($(PY) -c 'from evit_deploy.triton.server import stub_site; print(stub_site())')" 'numpy<2'
	touch $(STAMP)

# The ImageNet competitors only timm implements (CoAtNet, EfficientNetV2, FasterViT) import torchvision, which must be
# built for the torch beside it; PyPI's torchvision cannot be imported beside the CPU torch 2.13.0 of .venv. This
# second environment holds the torch 2.14.1 + torchvision 0.29.1 pair (a CUDA build that runs on the CPU; about
# 8 GB with every extra) and the whole package, so `bench --compare`/`--paper-table` run there with them. See the
# README ("Compare with the paper's competitors") for why this is not the main environment.
TIMM_VENV := .venv-timm
TIMM_STAMP := $(TIMM_VENV)/.installed

compare-timm-env: $(TIMM_STAMP)

$(TIMM_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	test -x $(TIMM_VENV)/bin/python || $(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_VENV)/bin/python -m pip install -q --upgrade pip
	$(TIMM_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(TIMM_VENV)/bin/python -m pip install -q -e ".[onnx,tflite,openvino,serve,eval,ray,compare,compare-timm,test]"
	touch $(TIMM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/evit-deploy demo

# Two workers, one test file each at a time (a file's module fixtures stay in one process), the heaviest files first
# (tests/conftest.py; xdist's reorder by test count would put them last): 11-11.5 minutes on this 2-core machine
# (648-690 s); three workers took longer (940 s: the suite is CPU-bound).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# The edit loop: every test but the slow and integration tiers (tests/conftest.py), under 2 minutes on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow and not integration"

lint: $(STAMP)
	$(VENV)/bin/ruff check evit_deploy tests latency

clean:
	rm -rf $(VENV) $(TIMM_VENV) build dist *.egg-info exports demo-output
