"""The `txgallery` command: serve the gallery, list demos, re-train the embedded models."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

from txgallery import settings
from txgallery.lib.threads import prefer_passive_openmp

log = logging.getLogger("txgallery")

MCP_PATH = "/gradio_api/mcp/"  # where Gradio serves the MCP tools (streamable HTTP; SSE at .../sse)
MCP_INSTALL = "pip install 'txgallery[mcp]' (`make install` includes it)"


def _setup(args: argparse.Namespace) -> None:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.configure(settings.load_settings(getattr(args, "model", None), getattr(args, "config", None),
                                              allow_hub=getattr(args, "allow_hub", None),
                                              presenter_key=getattr(args, "presenter_key", None)))


def check_models(entries, load: bool) -> list[tuple[bool, str]]:
    """Resolve (and with `load`, load) every model the demos use; returns (ok, status line) per model."""
    from txgallery.models import store
    from txgallery.plugin import page_context

    statuses = []
    for entry in entries:
        for sources in page_context(entry.demo).models.values() if entry.ok else ():
            for source in sources:
                try:
                    if isinstance(source, store.ModelLoadError):
                        raise source
                    if load:
                        store.get_store().load(source)
                    statuses.append((True, f"{entry.slug}: {'loaded' if load else 'resolved'} {source.label} "
                                           f"({source.reason})"))
                except store.ModelLoadError as exc:
                    statuses.append((False, f"{entry.slug}: ERROR {exc}"))
    return statuses


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the gallery (or chosen demos) in this process."""
    from txgallery.gallery import build_gallery, build_single, launch
    from txgallery.plugin import discover_demos

    if args.mcp and importlib.util.find_spec("mcp") is None:
        print(f"txgallery: --mcp needs the MCP package: {MCP_INSTALL}", file=sys.stderr)
        return 2
    entries = discover_demos(only=args.demo or None)
    for entry in entries:
        if not entry.ok:
            log.warning("demo %s is unavailable: %s", entry.name, entry.error)
    for ok, line in check_models(entries, load=args.preload):
        (log.info if ok else log.warning)(line)
    app = build_single(entries[0]) if args.demo and len(args.demo) == 1 else build_gallery(entries)
    log.info("serving %d demo(s) on http://%s:%d", len(entries), args.host, args.port)
    if args.mcp:
        log.info("MCP tools (streamable HTTP) on http://%s:%d%s", args.host, args.port, MCP_PATH)
    launch(app, host=args.host, port=args.port, share=args.share, mcp_server=args.mcp)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print every installed demo, its origin, and the reason a broken one did not load; with --models, its models."""
    from txgallery.plugin import build_entry, discover_demos

    entries = discover_demos(only=args.demo)
    for entry in entries:
        if entry.ok and build_entry(entry) is not None:  # a demo whose build() fails is broken too
            print(f"{entry.slug:<20} ok      {entry.demo.title} — {entry.demo.description}  [{entry.origin}]")
        else:
            print(f"{entry.name:<20} BROKEN  {entry.error}  [{entry.origin}]")
    if args.models:
        print("\nmodels:")
        statuses = check_models(entries, load=True)
        print("\n".join(f"  {line}" for _, line in statuses))
        return 0 if all(ok for ok, _ in statuses) else 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Re-train an embedded model the project builds itself."""
    if args.target == "vit":
        from txgallery.embedded.vit import VIT_FASHION_DIR, VitRecipe, train_vit

        metrics = train_vit(args.out or VIT_FASHION_DIR, VitRecipe(epochs=args.epochs or VitRecipe.epochs,
                                                                   max_steps=args.max_steps, seed=args.seed))
        print(f"held-out Fashion-MNIST accuracy {metrics['test_accuracy']:.4f} ({metrics['test_size']} test images) "
              f"-> {args.out or VIT_FASHION_DIR}")
        return 0
    if args.target == "clip":
        from txgallery.embedded.conse import CONSE_DIR, train_conse

        metrics = train_conse(args.out or CONSE_DIR)
        print(f"zero-shot Fashion-MNIST accuracy {metrics['fashion_mnist_accuracy']:.4f} "
              f"({metrics['fashion_mnist_size']} test images), logit scale {metrics['logit_scale']:g} "
              f"-> {args.out or CONSE_DIR}")
        return 0
    if args.target == "shakespeare-gpt2":
        from txgallery.embedded.shakespeare import (
            WEIGHTS,
            PretrainRecipe,
            train_shakespeare_gpt2,
        )

        metrics = train_shakespeare_gpt2(args.out or WEIGHTS, PretrainRecipe(steps=args.max_steps or PretrainRecipe.steps,
                                                                             seed=args.seed))
        print(f"held-out plays: validation loss {metrics['validation_loss']:.4f}, perplexity "
              f"{metrics['validation_perplexity']:.2f} -> {args.out or WEIGHTS}")
        return 0
    if args.target == "t5":
        from txgallery.embedded.t5 import T5_DIR, T5Recipe, train_embedded_t5

        metrics = train_embedded_t5(args.out or T5_DIR, T5Recipe(epochs=args.epochs or T5Recipe.epochs,
                                                                 max_steps=args.max_steps, seed=args.seed),
                                    eval_limit=args.eval_limit)
        print(f"held-out sentiment accuracy {metrics['test_accuracy']:.4f}, fill exact match "
              f"{metrics['test']['fill_exact_match']:.4f} ({metrics['test_size']} sentences) -> {args.out or T5_DIR}")
        return 0
    from txgallery.embedded.sentiment import (
        SENTIMENT_ADAPTER_DIR,
        train_sentiment_adapter,
    )
    from txgallery.embedded.training import LoraRecipe

    recipe = LoraRecipe(epochs=args.epochs or 3, max_steps=args.max_steps, seed=args.seed)
    metrics = train_sentiment_adapter(args.out or SENTIMENT_ADAPTER_DIR, recipe, eval_limit=args.eval_limit)
    print(f"validation accuracy {metrics['validation_accuracy']:.4f}, held-out test accuracy "
          f"{metrics['test_accuracy']:.4f} ({metrics['test_size']} sentences) -> {args.out or SENTIMENT_ADAPTER_DIR}")
    return 0


def cmd_ray(args: argparse.Namespace) -> int:
    """Run the gallery on a local Ray (127.0.0.1) with Ray Serve until Ctrl-C; then stop everything it started."""
    import os
    import time

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local and loopback only; clusters use tokens (deploy/)
    import ray
    from ray import serve

    from txgallery.serving.ray_serve import build_app

    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app({"replicas": args.replicas, "demos": args.demo or [], "models": args.model or []}),
                  name="txgallery", route_prefix="/")
        log.info("the gallery is on http://%s:%d (Ray Serve); Ctrl-C stops it", args.host, args.port)
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()


def cmd_spaces(args: argparse.Namespace) -> int:
    """Assemble a ready-to-push Hugging Face Space folder."""
    from txgallery.serving.spaces import build_space

    print(f"Space folder ready: {build_space(args.out, args.wheel)}")
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    """Print every limit of the gallery as a Markdown table (the README's table is this output)."""
    from txgallery.limits import limits_markdown

    print(limits_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every command has --help)."""
    parser = argparse.ArgumentParser(prog="txgallery", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gallery in this process",
                                description="Run the gallery (or some demos) in this process.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--share", action="store_true", help="create a public Gradio share link")
    serve.add_argument("--demo", action="append", metavar="SLUG",
                       help="serve only this demo (repeatable); with one, the demo runs alone")
    serve.add_argument("--model", action="append", metavar="SLUG=MODEL[,MODEL]",
                       help="models for a demo: 'embedded', a local directory or a hub id; several are shown side by "
                            "side (e.g. --model sentiment=embedded,distilbert-base-uncased-finetuned-sst-2-english)")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file (default: ./txgallery.toml if present)")
    serve.add_argument("--preload", action="store_true", help="load every model before serving (errors are logged)")
    serve.add_argument("--presenter-key", metavar="KEY",
                       help="presenter mode: whoever opens a page with ?presenter=KEY leads every attendee who ticks "
                            "'Follow the presenter' (or set $TXGALLERY_PRESENTER_KEY, which `ps` does not show)")
    serve.add_argument("--mcp", action="store_true",
                       help=f"also serve every public API endpoint as an MCP tool on {MCP_PATH} (needs: {MCP_INSTALL})")
    serve.add_argument("--allow-hub", action="append", metavar="PATTERN",
                       help="hub ids users may type into pages (glob, repeatable, e.g. 'gpt2' or 'google/*'); "
                            "default: none")
    serve.set_defaults(func=cmd_serve)

    listing = commands.add_parser("list", help="list installed demos and broken plugins",
                                  description="List installed demos; --models also loads their configured models.")
    listing.add_argument("--demo", action="append", metavar="SLUG", help="only these demos (repeatable)")
    listing.add_argument("--models", action="store_true", help="load each demo's configured models and report")
    listing.add_argument("--model", action="append", metavar="SLUG=MODEL[,MODEL]", help="as for serve")
    listing.add_argument("--config", metavar="FILE", help="as for serve")
    listing.set_defaults(func=cmd_list)

    limits_cmd = commands.add_parser("limits", help="print every limit (tokens, uploads, steps …) as a table",
                                     description="Print every limit of the gallery as a Markdown table.")
    limits_cmd.set_defaults(func=cmd_limits)

    train = commands.add_parser("train", help="re-train an embedded model (deterministic)",
                                description="Re-train the embedded sentiment LoRA adapter on Rotten Tomatoes, or "
                                              "the embedded ViT on Fashion-MNIST.")
    train.add_argument("target", choices=["sentiment", "vit", "t5", "clip", "shakespeare-gpt2"])
    train.add_argument("--out", help="output directory (default: the package's shipped adapter)")
    train.add_argument("--epochs", type=int, default=None, help="default: 3 (sentiment), 8 (vit)")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (for a quick check)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--eval-limit", type=int, default=None,
                       help="sentiment and t5: score on only the first N validation/test sentences (a quick check)")
    train.set_defaults(func=cmd_train)

    ray_cmd = commands.add_parser("ray", help="run the gallery on Ray Serve (local Ray)",
                                  description="Run the gallery on a local Ray with Ray Serve: one UI replica, one "
                                              "deployment per model (clusters: deploy/README.md).")
    ray_cmd.add_argument("action", choices=["serve"])
    ray_cmd.add_argument("--host", default="127.0.0.1", help="address of Serve's HTTP proxy (default: 127.0.0.1)")
    ray_cmd.add_argument("--port", type=int, default=8000)
    ray_cmd.add_argument("--num-cpus", type=int, default=None, help="CPUs Ray may use (default: all)")
    ray_cmd.add_argument("--replicas", type=int, default=1, help="replicas per model deployment")
    ray_cmd.add_argument("--demo", action="append", metavar="SLUG", help="as for serve")
    ray_cmd.add_argument("--model", action="append", metavar="SLUG=MODEL[,MODEL]", help="as for serve")
    ray_cmd.set_defaults(func=cmd_ray)

    spaces = commands.add_parser("spaces", help="assemble a Hugging Face Space folder",
                                 description="Assemble a ready-to-push Hugging Face Space (app, README front "
                                             "matter, requirements, txgallery wheel) from a source checkout.")
    spaces.add_argument("action", choices=["build"])
    spaces.add_argument("out", help="output folder")
    spaces.add_argument("--wheel", help="use this txgallery wheel instead of building one")
    spaces.set_defaults(func=cmd_spaces)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `txgallery` console script."""
    prefer_passive_openmp()  # before torch is imported
    args = build_parser().parse_args(argv)
    try:
        _setup(args)
        return args.func(args)
    except settings.SettingsError as exc:
        print(f"txgallery: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
