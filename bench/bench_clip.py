"""CLIP images/s: the gallery's path vs the raw model forward, at batch 1 and 32, for the stand-in and a ViT-B-32.

    .venv/bin/python bench/bench_clip.py [--rounds 20] [--http --port 7872]

For each model (the embedded ConSE stand-in; open_clip ViT-B-32 with random weights saved locally, which costs what
the real laion2b checkpoint costs), interleaving the paths round by round in this process:
  raw        PIL images -> the model's preprocessing -> encode_image, and encode_text of the prompts (the baseline)
  gallery    what the page does: `load_image` of an uploaded PNG, RGB arrays through the serving seam
             (`connect(ClipMatcher, source)`, the model's own thread), preprocessing, both encoders, softmax
Batch 1 is one image against 6 prompts (the page's `zero_shot`: on the CPU, new prompts are embedded on a second
thread beside the image, each encoder on half the OpenMP threads), twice: with new labels every call (nothing
cached: the prompts differ round by round, for raw too) and with the same labels and a new image each call (the
page's prompt cache answers). Batch 32 is 32 images
against 6 prompts (`similarity`, the search and matrix path). Every round uses pictures never seen before, so the
page's image cache cannot help.
With `--http`, batch 1 is also measured over HTTP against `txgallery serve --demo clip` (stand-in only), with the
same labels and with new labels every call, next to Gradio's `/ping` floor and an upload alone. Prints images/s and
the ratio gallery / raw (target ≤ 1.15 at batch 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server does (txgallery.lib.threads.prefer_passive_openmp)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from served import http_call, start_server, stop_server, upload  # noqa: E402
from timing import interleaved  # noqa: E402
from txgallery_demos.clip.run import apply_template  # noqa: E402
from txgallery_demos.clip.service import ClipMatcher, zero_shot  # noqa: E402

from txgallery.lib.images import load_image, load_images, sample_photos
from txgallery.models import (
    clip,
    store,  # noqa: E402
)
from txgallery.serving.seam import connect  # noqa: E402

LABELS = ["cat", "dog", "car", "cup of coffee", "rocket", "person"]
PROMPTS = apply_template("a photo of a {}", LABELS)


def fresh_pictures(folder: Path, rounds: int, per_round: int, series: int) -> list[list[Path]]:
    """PNG files, `per_round` for each round, all different (one pixel changes; `series` tells the sets apart),
    cycling through the sample photos."""
    bases = [np.asarray(load_image(path)) for path in sample_photos().values()]
    files = []
    for r in range(rounds):
        batch = []
        for k in range(per_round):
            picture = bases[(r * per_round + k) % len(bases)].copy()
            picture[0, 0] = [(r * per_round + k) % 256, r % 256, k % 256]
            picture[0, 1] = [series, 0, 0]
            path = folder / f"s{series}_r{r}_{k}.png"
            Image.fromarray(picture).save(path)
            batch.append(path)
        files.append(batch)
    return files


def random_vit_b32(folder: Path) -> str:
    """open_clip ViT-B-32 with random weights saved locally: what the real laion2b checkpoint costs to run."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    clip.save_clip_directory(model, "ViT-B-32", folder / "vit-b-32")
    return str(folder / "vit-b-32")


def new_prompts(i: int) -> list[str]:
    """PROMPTS made new for round `i` (the page has never embedded them)."""
    return [f"{prompt} #{i}" for prompt in PROMPTS]


BATCHES = {"1, new labels": 1, "1, same labels": 1, "32": 32}


@torch.inference_mode()
def raw_zero_shot(loaded: store.LoadedModel, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
    """The baseline: PIL images and prompts through both encoders, then the softmax over the prompts."""
    image_vectors = clip.embed_images(loaded, images)
    return clip.zero_shot_probabilities(image_vectors @ clip.embed_texts(loaded, prompts).T, 100.0)


def measure(source: store.ModelSource, files: dict[str, list[list[Path]]], rounds: int) -> dict[str, dict]:
    """Seconds per call of the raw and the gallery path, per batch."""
    loaded = store.get_store().load(source)
    matcher = connect(ClipMatcher, source)
    results = {}
    for name, batch in BATCHES.items():
        per_round = files[name]
        raw_images = [[Image.open(path).convert("RGB") for path in paths] for paths in per_round]
        prompts = new_prompts if name == "1, new labels" else (lambda i: PROMPTS)

        def raw(i: int) -> None:
            raw_zero_shot(loaded, raw_images[i], prompts(i))

        def gallery(i: int) -> None:
            if batch == 1:
                zero_shot(matcher, per_round[i][0], prompts(i))
            else:
                arrays = [np.asarray(image) for image in load_images(per_round[i])]  # as the page reads uploads
                matcher.similarity(arrays, prompts(i))

        results[name] = interleaved({"raw": raw, "gallery": gallery}, n=rounds - 2)
    return results


def http_batch1(port: int, pictures: dict[str, list[Path]], rounds: int) -> dict[str, list[float]]:
    """Batch 1 over HTTP (the stand-in): upload a new picture and call /clip_classify with the same labels every
    round, and with new labels every round, beside Gradio's /ping echo (its floor), an upload alone, and the raw path
    in this process with the same prompts and with new ones. `pictures` has a series of files for each (the page
    caches image embeddings too, so no file is sent twice)."""
    import httpx

    loaded = store.get_store().load(store.resolve("embedded", clip.TASK))
    same, new = pictures["1, same labels"], pictures["1, new labels"]
    decoded = {name: [Image.open(path).convert("RGB") for path in paths] for name, paths in
               (("same", same), ("new", new))}

    def new_labels(i: int) -> str:
        return ", ".join(f"{label} #{i}" for label in LABELS)  # the template makes them new_prompts(i)

    server = start_server(port, "clip", timeout=600)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            def classify(labels: str, path: Path) -> None:
                http_call(http, "clip_classify", [upload(http, path), labels, "a photo of a {}"])

            return interleaved({
                "raw, same prompts (this process)": lambda i: raw_zero_shot(loaded, [decoded["same"][i]], PROMPTS),
                "raw, new prompts (this process)": lambda i: raw_zero_shot(loaded, [decoded["new"][i]],
                                                                           new_prompts(i)),
                "echo /ping (floor)": lambda i: http_call(http, "ping", ["x"]),
                "upload alone": lambda i: upload(http, same[i]),
                "gallery, same labels (upload + /clip_classify)": lambda i: classify(", ".join(LABELS), same[i]),
                "gallery, new labels (upload + /clip_classify)": lambda i: classify(new_labels(i), new[i]),
            }, n=rounds - 2)
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--http", action="store_true", help="also measure batch 1 over HTTP (starts a server)")
    parser.add_argument("--port", type=int, default=7872)
    parser.add_argument("--only", choices=["stand-in", "vit-b-32"],
                        help="one model (vit-b-32: where the stand-in's MiniLM/EfficientNet packages are absent)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-clip-"))
    files = {name: fresh_pictures(work, args.rounds, batch, series)
             for series, (name, batch) in enumerate(BATCHES.items())}
    models = {"ConSE stand-in (embedded)": lambda: store.resolve("embedded", clip.TASK),
              "open_clip ViT-B-32 (random weights)": lambda: store.resolve(random_vit_b32(work), clip.TASK)}
    if args.only:
        models = {name: source for name, source in models.items() if name.startswith(
            {"stand-in": "ConSE", "vit-b-32": "open_clip"}[args.only])}
    device = torch.cuda.get_device_name() if store.get_store().device == "cuda" else "CPU"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}; {args.rounds - 2} rounds\n")
    print("| model | batch | raw images/s | gallery images/s | gallery / raw time (p50) |\n|---|---|---|---|---|")
    for name, source in models.items():
        for label, samples in measure(source(), files, args.rounds).items():
            batch = BATCHES[label]
            raw, gallery = statistics.median(samples["raw"]), statistics.median(samples["gallery"])
            print(f"| {name} | {label} | {batch / raw:.1f} | {batch / gallery:.1f} | {gallery / raw:.2f}× |",
                  flush=True)
    if args.http:
        samples = http_batch1(args.port, {name: [paths[0] for paths in files[name]]
                                          for name in ("1, same labels", "1, new labels")}, args.rounds)
        p50 = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
        print("\n| HTTP path, stand-in, batch 1 | p50 ms |\n|---|---|")
        print("\n".join(f"| {name} | {value:.1f} |" for name, value in p50.items()))
        floor, sent = p50["echo /ping (floor)"], p50["upload alone"]
        for labels in ("same", "new"):
            share = p50[f"gallery, {labels} labels (upload + /clip_classify)"] - floor
            raw = p50[f"raw, {labels} prompts (this process)"]
            print(f"{labels} labels: (gallery − echo) / raw = {share / raw:.2f}×; without the upload as well: "
                  f"{(share - sent) / raw:.2f}×")


if __name__ == "__main__":
    main()
