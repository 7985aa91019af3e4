# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lzn-installed

.PHONY: demo zones test bench fashion clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# the main job: joint generation + classification on the embedded digits (CPU, a few minutes)
demo: $(STAMP)
	$(VENV)/bin/lzn demo --out runs/demo

# the 2-D picture of anchors, zones and latents
zones: $(STAMP)
	$(VENV)/bin/lzn zones --out runs/zones

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/zones.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/augment.py

# Fashion-MNIST IDX files from Debian (optional; used by the `fashion` preset)
fashion:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)

clean:
	rm -rf $(VENV) runs build *.egg-info
