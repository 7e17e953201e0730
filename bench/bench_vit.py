"""ViT images/s: the gallery's path vs the raw model forward, at batch 1 and 32, in one run.

    .venv/bin/python bench/bench_vit.py [--rounds 20] [--big-rounds 5] [--http --port 7873]

For each model (the embedded Fashion-MNIST ViT; a ViT-B/16 with random weights saved locally, which costs what
`google/vit-base-patch16-224` costs), interleaving the paths round by round in this process:
  raw        decoded PIL images -> the model's preprocessing -> forward -> softmax (the baseline)
  gallery    what the page does: `load_image` of the uploaded file, RGB arrays through the serving seam
             (`connect(ImageService, source)`, the model's own thread), preprocessing, forward; at batch 1 the page's
             `classify` (top-5, the picture as the model saw it and the attention rollout), at batch 32 `predict`
             of 32 files decoded side by side (`load_images`, as the CLIP page decodes uploads)
  raw from the file   the raw path from the picture file (PIL decode and RGB included), as the page starts from an
             upload: on a GPU, where the forward takes a few ms, decoding is most of the page's extra time
  raw, same threads   the raw path on a thread whose OpenMP threads are settled as the page's service settles
             its own (`threads.settle_threads_for`: one thread for a tiny CPU model), reached through one hop
For a small ViT on the CPU the page reads the logits and attention maps from a traced graph of the model
(`attention.vit_attentions`); the raw paths run the model's own eager forward. The stage breakdown shows both.
Prints images/s and the ratio gallery / raw latency (target ≤ 1.15 at batch 1), and where the gallery's batch-1 time
goes, stage by stage. With `--http` (run it in a loopback-only namespace), the embedded ViT's batch 1 is also timed
over HTTP against `txgallery serve --demo vit`: a browser's upload of the file then `/vit_classify` (the top class and
top 5), and the whole page (`/vit_classify`, then `/vit_explain`, which draws the patch grid and rollout from the same
result), beside Gradio's `/ping` echo (its floor), an upload alone, and the raw path in this process, all interleaved
round by round.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server does (txgallery.lib.threads.prefer_passive_openmp)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from served import distinct_copies, http_call, start_server, stop_server, upload  # noqa: E402
from timing import interleaved  # noqa: E402
from txgallery_demos.vit.run import TASK, ImageService  # noqa: E402

from txgallery.lib.attention import rollout_row, vit_attentions  # noqa: E402
from txgallery.lib.images import (  # noqa: E402
    fashion_mnist_examples,
    load_image,
    load_images,
    sample_photos,
)
from txgallery.lib.threads import settle_threads_for  # noqa: E402
from txgallery.lib.vit import ImageClassifier  # noqa: E402
from txgallery.models import store  # noqa: E402
from txgallery.serving.seam import connect  # noqa: E402


def random_vit_b16(folder: Path) -> Path:
    """ViT-B/16 (224×224, 86M weights, 1,000 classes) with random weights, saved like a hub checkpoint."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(num_labels=1000)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def decode_file(path: Path) -> Image.Image:
    """How a user of the raw model reads a picture file: PIL, converted to RGB (no size checks, no downscaling)."""
    with Image.open(path) as image:
        return image.convert("RGB")


def raw_forward(classifier: ImageClassifier, images: list[Image.Image]):
    """The baseline: decoded PIL images -> the model's preprocessing -> forward -> softmax (on a GPU: waits for it)."""
    with torch.inference_mode():
        out = classifier.model(classifier.processor.batch(images).to(classifier.device))
        return (out.logits if hasattr(out, "logits") else out).softmax(-1).cpu()


def measure(name: str, source: store.ModelSource, files: list[Path], rounds: int,
            big_rounds: int) -> tuple[list[str], str]:
    """Rows of the results table for one model, and its row of the stage breakdown."""
    service = connect(ImageService, source)
    loaded = store.get_store().load(source, attentions=True)  # the same model object the service holds
    classifier = ImageClassifier(loaded.model, loaded.tokenizer, loaded.device)
    # The page's service settles its thread's OpenMP threads for its model (one, for a tiny CPU model); "raw, same
    # threads" runs the raw path on a thread settled the same way, so the gallery's own overhead shows apart from it.
    settled = ThreadPoolExecutor(1, initializer=settle_threads_for, initargs=(loaded.model, loaded.device))
    decoded = [load_image(path) for path in files]

    def raw(images):
        return raw_forward(classifier, images)

    def gallery_one(i):
        return service.classify(np.asarray(load_image(files[i % len(files)])), "mean", 0.0)

    def gallery_many(i):
        return service.predict([np.asarray(image) for image in load_images(batch_files)])

    batch_files = (files * (32 // len(files) + 1))[:32]
    batch_images = (decoded * (32 // len(decoded) + 1))[:32]
    one = interleaved({"raw": lambda i: raw([decoded[i % len(decoded)]]),
                       "raw, same threads": lambda i: settled.submit(raw, [decoded[i % len(decoded)]]).result(),
                       "raw from the file": lambda i: raw([decode_file(files[i % len(files)])]),
                       "gallery": gallery_one}, rounds)
    many = interleaved({"raw": lambda i: raw(batch_images),
                        "raw, same threads": lambda i: settled.submit(raw, batch_images).result(),
                        "raw from the file": lambda i: raw([decode_file(path) for path in batch_files]),
                        "gallery": gallery_many}, big_rounds, warmup=1)
    stages = settled.submit(breakdown, classifier, files, rounds).result()  # where the service would run it
    settled.shutdown()
    rows = []
    for batch, samples in ((1, one), (32, many)):
        raw_s, same_s, file_s, gallery_s = (statistics.median(samples[k]) for k in
                                            ("raw", "raw, same threads", "raw from the file", "gallery"))
        rows.append(f"| {name} | {batch} | {raw_s * 1e3:.1f} ms ({batch / raw_s:.1f} img/s) | {same_s * 1e3:.1f} ms | "
                    f"{file_s * 1e3:.1f} ms | {gallery_s * 1e3:.1f} ms ({batch / gallery_s:.1f} img/s) | "
                    f"**{gallery_s / raw_s:.2f}×** | {gallery_s / same_s:.2f}× | {gallery_s / file_s:.2f}× |")
    return rows, f"| {name} | " + " | ".join(f"{statistics.median(v) * 1e3:.2f}" for v in stages.values()) + " |"


BREAKDOWN_HEADER = ("| model | decode upload | fit (resize) | tensor to device | forward + attentions to host | "
                    "[CLS] rollout | for comparison: the model's eager forward alone |")


def breakdown(classifier: ImageClassifier, files: list[Path], rounds: int) -> dict[str, list[float]]:
    """Seconds of each stage of the page's batch-1 path, run one after the other as `classify` does (no hop)."""
    state = {}

    def decode(i):
        state["picture"] = np.asarray(load_image(files[i % len(files)]))

    def fit(i):
        state["fitted"] = classifier.processor.fit(Image.fromarray(state["picture"]))

    def to_device(i):
        state["pixels"] = classifier.processor.tensor(state["fitted"])[None].to(classifier.device)

    def forward(i):
        state["attention"] = vit_attentions(classifier.model, state["pixels"], "mean")

    def rollout(i):
        rollout_row(state["attention"].attentions)

    def eager_forward(i):
        with torch.inference_mode():
            classifier.model(state["pixels"])

    return interleaved({"decode": decode, "fit": fit, "to device": to_device, "forward": forward,
                        "rollout": rollout, "eager forward": eager_forward}, rounds)


def whole_page(http, path: Path) -> None:
    """What a browser's upload runs: the classification, then the chained event that draws the two pictures."""
    uploaded = upload(http, path)
    http_call(http, "vit_classify", [uploaded, "mean", 0.0])
    http_call(http, "vit_explain", [uploaded, "mean", 0.0])


def http_batch1(port: int, files: list[Path], rounds: int, model: str = "embedded") -> dict[str, list[float]]:
    """A ViT's batch 1 over HTTP, beside Gradio's floor and the raw path in this process (seconds).

    Every call gets a picture of its own (`distinct_copies`): the page keeps its most recent results, and a picture
    it has seen would be answered without a forward.
    """
    import httpx

    warmup = 3
    folder = Path(tempfile.mkdtemp(prefix="bench-vit-http-"))
    for_classify, for_page = (distinct_copies(files, warmup + rounds, folder, series) for series in (0, 1))
    loaded = store.get_store().load(store.resolve(model, TASK), attentions=True)
    classifier = ImageClassifier(loaded.model, loaded.tokenizer, loaded.device)
    decoded = [load_image(path) for path in for_classify]

    def raw(i: int) -> None:
        raw_forward(classifier, [decoded[i]])

    server = start_server(port, "vit", timeout=600, extra=("--model", f"vit={model}"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            return interleaved({
                "raw forward (this process)": raw,
                "echo /ping (floor)": lambda i: http_call(http, "ping", ["x"]),
                "upload alone": lambda i: upload(http, files[i % len(files)]),
                "gallery: upload + /vit_classify": lambda i: http_call(
                    http, "vit_classify", [upload(http, for_classify[i]), "mean", 0.0]),
                "gallery: upload + /vit_classify, then /vit_explain": lambda i: whole_page(http, for_page[i]),
            }, rounds, warmup=warmup)
    finally:
        stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds at batch 1")
    parser.add_argument("--big-rounds", type=int, default=5, help="timed rounds at batch 32")
    parser.add_argument("--embedded-only", action="store_true", help="skip ViT-B/16 (minutes per round on 2 busy cores)")
    parser.add_argument("--http", action="store_true", help="also time the embedded ViT over HTTP (starts a server)")
    parser.add_argument("--port", type=int, default=7873)
    args = parser.parse_args()
    photos = list(sample_photos().values())
    fashion = list(fashion_mnist_examples().values())
    rows, stages = measure("vit-fashion-mnist (embedded, 0.31M weights, 28×28)", store.resolve("embedded", TASK),
                           fashion, args.rounds, args.big_rounds)
    stages, over_http = [stages], {}
    if args.http:
        over_http["vit-fashion-mnist (embedded)"] = http_batch1(args.port, fashion, args.rounds)
    if not args.embedded_only:
        with tempfile.TemporaryDirectory() as folder:
            vit_b16 = str(random_vit_b16(Path(folder)))
            more, stage = measure("ViT-B/16 architecture (86M weights, 224×224, random weights)",
                                  store.resolve(vit_b16, TASK), photos, args.rounds, args.big_rounds)
            rows, stages = rows + more, stages + [stage]
            if args.http:
                over_http["ViT-B/16 architecture"] = http_batch1(args.port, photos, args.rounds, vit_b16)
    device = torch.cuda.get_device_name() if store.get_store().device == "cuda" else "CPU"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.rounds} rounds (batch 1) and {args.big_rounds} (batch 32)")
    print("| model | batch | raw forward | raw, same threads (+ hop) | raw from the file | gallery path | gallery / raw | "
          "gallery / raw, same threads | gallery / raw from the file |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nWhere the gallery's batch-1 time goes, medians in ms (the rest of its total is the hop to the model's "
          "thread and the top-5):")
    print(BREAKDOWN_HEADER + "\n|---|---|---|---|---|---|---|")
    print("\n".join(stages))
    for name, samples in over_http.items():
        p50 = {path: statistics.median(values) * 1e3 for path, values in samples.items()}
        print(f"\n{name} over HTTP, batch 1, p50 of {args.rounds} rounds (ms):\n| path | p50 ms |\n|---|---|")
        print("\n".join(f"| {path} | {value:.1f} |" for path, value in p50.items()))
        raw, floor, sent = (p50[k] for k in ("raw forward (this process)", "echo /ping (floor)", "upload alone"))
        classify, page = (p50[k] for k in ("gallery: upload + /vit_classify",
                                           "gallery: upload + /vit_classify, then /vit_explain"))
        print(f"classification: (gallery − upload − echo) / raw = {(classify - sent - floor) / raw:.2f}×; "
              f"the whole page, pictures included (two events, so two echoes): "
              f"{(page - sent - 2 * floor) / raw:.2f}×")


if __name__ == "__main__":
    main()
