# Two commands for users: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: this exact version resolves to the CPU wheel on the build machines (no multi-GB download)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[onnx,tflite,openvino,serve,eval,ray,compare,video,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/evit-deploy demo

# Two workers, one test file each at a time (a file's module fixtures stay in one process): about 7 minutes
# on 2 cores instead of 10, since export, conversion and decoding leave a core idle much of the time.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check evit_deploy tests

clean:
	rm -rf $(VENV) build dist *.egg-info exports demo-output
