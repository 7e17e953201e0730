"""Capacity model with a simulated GPU: throughput and p50/p95 through the whole stack, 1–4 model replicas, 1–64 clients.

    unshare -rn sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_capacity.py [--replicas 1,2,4]
        [--clients 1,4,16,64] [--seconds 10] [--device-ms 20,1] [--batching-clients 16] [--real sentiment]'

What it starts, all on 127.0.0.1 (run it inside a loopback-only namespace, as above):
- a two-node Ray cluster: `ray start --head` and `ray start --address`, each node declaring `--num-gpus 1`;
- the gallery on Ray Serve with only the simulated-GPU demo (bench/plugins/txgallery_simulated, put on PYTHONPATH
  here: a plugin like any other, its service `SimulatedDevice` a deployment of its own) at `num_gpus: 0.5` per model
  replica, so four replicas fill both nodes' GPUs; one UI replica (Gradio), one proxy (on the head).
The simulated device holds each batch for BASE + PER_ITEM · n ms, sleeping (no CPU, no GIL): what remains is the
serving stack's own cost. For every point, `--seconds` of closed-loop clients (txgallery.loadgen: Gradio's HTTP API,
one call after another per client, no think time):
  echo        `/ping` through the proxy and the UI replica: the UI replica's own ceiling, no model (the baseline)
  model only  the model deployment alone through a DeploymentHandle, no UI: the replicas' ceiling
  through UI  `/simulated_predict`: proxy → UI replica (Gradio) → model deployment, what users get
at each replica count; then, at `--batching-clients`, the same with `max_batch_size=1` (one call per batch): the
batching ratio through the UI. `--real DEMO` adds that ratio for a real CPU model (default: the sentiment classifier).
Prints the tables, the model-bound prediction (each replica batching every waiting call, up to the batch size) beside
the echo ceiling, and ratios against the same run's baselines (1 replica; one-at-a-time; echo).
Stops what it started by pid, not with `ray stop` (which stops every Ray of this user on the machine), and checks that
no process of its cluster is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "bench" / "plugins"
BIN = Path(sys.executable).parent  # ray of this environment
APP = "txgallery"
INGRESS = "GalleryIngress"
PR_SET_CHILD_SUBREAPER = 36
NODE_CPUS, NODE_GPUS, REPLICA_GPUS = 4, 1, 0.5  # logical: a scheduling budget, not the machine's cores
BATCH = re.compile(r"batch of (\d+)")

sys.path.insert(0, str(PLUGINS))
sys.path.insert(0, os.path.dirname(__file__))

import psutil  # noqa: E402
from served import free_port, process_cmdline  # noqa: E402
from timing import percentiles  # noqa: E402

from txgallery.loadgen import run_load  # noqa: E402
from txgallery.plugin import ApiCall  # noqa: E402

# --- the cluster ------------------------------------------------------------------------------------------------------



class TwoNodeCluster:
    """`ray start --head` plus one `ray start --address` on 127.0.0.1; stopped by pid, every process accounted for."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.temp = Path(tempfile.mkdtemp(prefix="txgcap-"))  # short: Ray's unix socket paths are ≤ 107 bytes
        self.port = free_port()
        self.before = {p.pid for p in psutil.Process().children(recursive=True)}
        # the daemons `ray start` leaves behind become this process's children, so they can be found and reaped
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

    def _ray(self, *args: str) -> None:
        subprocess.run([str(BIN / "ray"), *args], env=self.env, check=True, capture_output=True, timeout=300)

    def start(self) -> str:
        """Start both nodes; the head's address."""
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={NODE_CPUS}", f"--num-gpus={NODE_GPUS}",
                  f"--object-store-memory={256 * 2**20}", "--disable-usage-stats"]
        self._ray("start", "--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp}",
                  *common)
        self._ray("start", f"--address=127.0.0.1:{self.port}", f"--dashboard-agent-listen-port={free_port()}",
                  *common)
        return f"127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: new descendants, and whatever names its session directory."""
        own = {p.pid: p for p in psutil.Process().children(recursive=True) if p.pid not in self.before}
        for process in psutil.process_iter():
            if str(self.temp) in process_cmdline(process):
                own.setdefault(process.pid, process)
        return [p for p in own.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    def stop(self) -> list[str]:
        """SIGTERM every process of the cluster, SIGKILL after 15 s; what is still alive after that (should be none)."""
        victims = self.processes()
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(victims, timeout=15)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        time.sleep(1)
        left = [f"{p.pid} {process_cmdline(p)[:100]}" for p in self.processes()]
        if not left:
            shutil.rmtree(self.temp, ignore_errors=True)
        return left



# --- the measurements -------------------------------------------------------------------------------------------------


def _batch_sizes(outputs: list[str]) -> list[int]:
    return [int(m) for text in outputs for m in BATCH.findall(text)]


ROLES = ("UI replica", "proxy", "model replicas", "bench clients", "Ray daemons")


def _role(process: psutil.Process, own: int) -> str:
    title = process_cmdline(process)
    if process.pid == own:
        return "bench clients"  # the load generator (and the idle driver)
    if title.startswith("ray::ServeReplica"):
        return "UI replica" if INGRESS in title else "model replicas"
    return "proxy" if title.startswith("ray::ProxyActor") else "Ray daemons"


class CpuMeter:
    """CPU seconds (user + system) spent by each role's processes between `start()` and `stop()`."""

    cluster: TwoNodeCluster | None = None

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds per role since `start()`."""
        after = self._sample()
        spent = dict.fromkeys(ROLES, 0.0)
        for pid, (role, seconds) in after.items():
            spent[role] += seconds - self.before.get(pid, (role, 0.0))[1]
        return spent

    def _sample(self) -> dict[int, tuple[str, float]]:
        own = os.getpid()
        processes = [psutil.Process(own), *(self.cluster.processes() if self.cluster else [])]
        out = {}
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                out[process.pid] = (_role(process, own), times.user + times.system)
        return out


METER = CpuMeter()


def _row(kind: str, replicas: int, batch: int, clients: int, latencies: list[float], failed: int, wall: float,
         sizes: list[int], cpu: dict[str, float]) -> dict:
    p50, p95 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
    answered = max(1, len(latencies))
    return {"kind": kind, "replicas": replicas, "max_batch": batch, "clients": clients,
            "rps": len(latencies) / wall, "p50": p50, "p95": p95, "failed": failed,
            "batch": sum(sizes) / len(sizes) if sizes else float("nan"),
            "cpu_ms": {role: 1e3 * seconds / answered for role, seconds in cpu.items()},  # per answered call
            "busy": sum(cpu.values()) / wall / (os.cpu_count() or 1)}  # share of the machine's cores


def through_ui(url: str, call: ApiCall, kind: str, replicas: int, batch: int, clients: int, seconds: float) -> dict:
    """`clients` closed-loop HTTP clients for `seconds` on one endpoint (after one warm-up call each)."""
    run_load(url, [call], clients, calls_per_client=1)
    METER.start()
    report = run_load(url, [call], clients, duration_s=seconds, keep_output=True)
    cpu = METER.stop()
    ok = [r for r in report.results if r.ok]
    return _row(kind, replicas, batch, clients, [r.seconds for r in ok], len(report.failures), report.wall_seconds,
                _batch_sizes([r.output for r in ok]), cpu)


def model_only(handle, method: str, argument: str, replicas: int, batch: int, clients: int, seconds: float) -> dict:
    """`clients` closed-loop callers of the model deployment's handle for `seconds`: the replicas without the UI."""
    latencies: list[float] = []
    outputs: list[str] = []
    failed = 0

    async def caller(deadline: float) -> None:
        nonlocal failed
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                _, value = await handle.call.remote(method, ([argument],), {})
                latencies.append(time.perf_counter() - start)
                outputs.append(json.dumps(value, default=str))
            except Exception:  # counted, not fatal
                failed += 1

    async def run() -> float:
        await asyncio.gather(*(caller(time.monotonic() + 1) for _ in range(clients)))  # warm-up
        latencies.clear()
        outputs.clear()
        METER.start()
        start = time.monotonic()
        await asyncio.gather(*(caller(start + seconds) for _ in range(clients)))
        return time.monotonic() - start

    wall = asyncio.run(run())
    return _row("model only", replicas, batch, clients, latencies, failed, wall, _batch_sizes(outputs), METER.stop())


def deploy(demos: list[str], replicas: int, max_batch: int) -> tuple[str, object]:
    """(Re)deploy the app; the model deployment's name and handle."""
    from ray import serve

    from txgallery.serving.ray_serve import build_app

    serve.run(build_app({"demos": demos, "replicas": replicas, "num_cpus": 0.25, "num_gpus": REPLICA_GPUS,
                         "max_batch_size": max_batch, "max_ongoing_requests": 64, "ui_num_cpus": 1}),
              name=APP, route_prefix="/")
    names = [n for n in serve.status().applications[APP].deployments if n != INGRESS]
    model = next(n for n in names if "Classifier" in n or "Simulated" in n)
    return model, serve.get_deployment_handle(model, app_name=APP)


def model_bound(clients: int, replicas: int, max_batch: int, base_ms: float, per_item_ms: float) -> float:
    """The replicas' ceiling in calls/s if every waiting call joins its replica's next batch (up to max_batch)."""
    per_replica = max(1, min(max_batch, -(-clients // replicas)))
    busy = min(clients, replicas)  # fewer clients than replicas leave replicas idle
    return busy * per_replica / ((base_ms + per_item_ms * per_replica) / 1e3)


# --- the run ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=10.0, help="per point")
    parser.add_argument("--device-ms", default="20,1", help="BASE,PER_ITEM: the simulated device's hold per batch")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batching-clients", type=int, default=16)
    parser.add_argument("--real", default="sentiment", help="a real demo for the batching ratio ('' to skip)")
    args = parser.parse_args()
    replica_counts = [int(r) for r in args.replicas.split(",")]
    levels = [int(c) for c in args.clients.split(",")]
    base_ms, per_item_ms = (float(x) for x in args.device_ms.split(","))

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_WAIT_POLICY="PASSIVE",
               TXGALLERY_SIMULATED_DEVICE_MS=f"{base_ms},{per_item_ms}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH", "")])))
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "OMP_WAIT_POLICY",
                                           "TXGALLERY_SIMULATED_DEVICE_MS", "PYTHONPATH")})
    cluster = TwoNodeCluster(env)
    CpuMeter.cluster = cluster
    rows: list[dict] = []
    started = time.monotonic()
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    predict, ping = ApiCall("simulated_predict", ("hello",)), ApiCall("ping", ("hello",))
    left: list[str] = []
    try:
        import ray
        from ray import serve

        ray.init(address=cluster.start(), log_to_driver=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port})

        def record(row: dict) -> None:
            rows.append(row)
            print(f"{row['kind']:<12} r={row['replicas']} b={row['max_batch']:<2} c={row['clients']:<3} "
                  f"{row['rps']:7.1f} req/s  p50 {row['p50']:7.1f} ms  p95 {row['p95']:7.1f} ms  "
                  f"batch {row['batch']:5.1f}  failed {row['failed']}", flush=True)

        for replicas in replica_counts:
            _, handle = deploy(["simulated"], replicas, args.max_batch)
            print(f"--- {replicas} model replica(s) on nodes {sorted(_model_replica_nodes())}", flush=True)
            for clients in levels:
                if replicas == replica_counts[0]:
                    record(through_ui(url, ping, "echo", replicas, 0, clients, args.seconds))
                record(model_only(handle, "predict", "hello", replicas, args.max_batch, clients, args.seconds))
                record(through_ui(url, predict, "through UI", replicas, args.max_batch, clients, args.seconds))
        c = args.batching_clients
        _, handle = deploy(["simulated"], 1, 1)
        record(model_only(handle, "predict", "hello", 1, 1, c, args.seconds))
        record(through_ui(url, predict, "through UI", 1, 1, c, args.seconds))
        if args.real:
            sys.path.insert(0, str(ROOT / "bench"))
            from bench_sentiment import TEXTS

            for batch in (args.max_batch, 1):
                _, handle = deploy([args.real], 1, batch)
                call = next(t for t in _demo_traffic(args.real) if t.api_name.endswith("_predict"))
                real_ui = through_ui(url, ApiCall(call.api_name, (TEXTS[0],)), f"{args.real} UI", 1, batch, c,
                                     args.seconds)
                real_model = model_only(handle, "predict", TEXTS[0], 1, batch, c, args.seconds)
                real_model["kind"] = f"{args.real} model"
                record(real_ui)
                record(real_model)
    except BaseException:
        traceback.print_exc()  # now: the cluster's teardown below can take a while
        raise
    finally:
        with contextlib.suppress(Exception):
            sys.modules["ray.serve"].shutdown()
        with contextlib.suppress(Exception):
            sys.modules["ray"].shutdown()
        left = cluster.stop()
    report(rows, args, replica_counts, levels, base_ms, per_item_ms, time.monotonic() - started, left)
    if left:
        raise SystemExit(f"processes of the cluster left behind: {left}")


def _model_replica_nodes() -> list[str]:
    """The node of each live model replica (from the GCS's actor table: this cluster runs no dashboard)."""
    from ray._private.state import actors

    return [info["Address"]["NodeID"][:8] for info in actors(actor_state_name="ALIVE").values()
            if "ServeReplica" in info.get("ActorClassName", "") and INGRESS not in info["ActorClassName"]]


def _demo_traffic(slug: str) -> tuple[ApiCall, ...]:
    from txgallery.plugin import discover_demos

    return discover_demos(only=[slug])[0].demo.traffic


def report(rows: list[dict], args, replica_counts: list[int], levels: list[int], base_ms: float, per_item_ms: float,
           seconds: float, left: list[str]) -> None:
    """The tables, the capacity model beside them, and the ratios."""
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}; {date.today()}; {seconds / 60:.1f} min in all")
    print(f"device: {base_ms:g} ms + {per_item_ms:g} ms per item per batch; max_batch_size {args.max_batch}; "
          f"{args.seconds:g} s per point; two nodes × {NODE_GPUS} GPU, {REPLICA_GPUS} GPU per model replica\n")
    print("| path | model replicas | max batch | clients | req/s | p50 ms | p95 ms | mean batch | failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['replicas']} | {r['max_batch'] or '–'} | {r['clients']} | {r['rps']:.1f} | "
              f"{r['p50']:.0f} | {r['p95']:.0f} | {r['batch']:.1f} | {r['failed']} |")
    get = {(r["kind"], r["replicas"], r["max_batch"], r["clients"]): r for r in rows}
    echo = {c: get[("echo", replica_counts[0], 0, c)]["rps"] for c in levels}
    print("\n| model replicas | clients | model bound req/s | model only req/s | echo (UI ceiling) req/s | "
          "through UI req/s | × 1 replica | through UI / echo | limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for replicas in replica_counts:
        for c in levels:
            bound = model_bound(c, replicas, args.max_batch, base_ms, per_item_ms)
            model = get[("model only", replicas, args.max_batch, c)]["rps"]
            ui = get[("through UI", replicas, args.max_batch, c)]["rps"]
            one = get[("through UI", replica_counts[0], args.max_batch, c)]["rps"]
            limit = "model replicas" if model < echo[c] else "UI replica"
            print(f"| {replicas} | {c} | {bound:.0f} | {model:.1f} | {echo[c]:.1f} | {ui:.1f} | {ui / one:.2f}× | "
                  f"{ui / echo[c]:.2f} | {limit} |")
    print("\nCPU per answered call, ms (all processes of the cluster and the bench; the machine has "
          f"{os.cpu_count()} cores):\n")
    print(f"| path | model replicas | max batch | clients | {' | '.join(ROLES)} | cores busy |")
    print("|---|---|---|---|" + "---|" * (len(ROLES) + 1))
    for r in rows:
        print(f"| {r['kind']} | {r['replicas']} | {r['max_batch'] or '–'} | {r['clients']} | "
              + " | ".join(f"{r['cpu_ms'][role]:.1f}" for role in ROLES) + f" | {r['busy']:.0%} |")
    c = args.batching_clients
    pairs = [("simulated", "through UI", "model only")]
    if args.real:
        pairs.append((args.real, f"{args.real} UI", f"{args.real} model"))
    print()
    for name, ui_kind, model_kind in pairs:
        ui = get[(ui_kind, 1, args.max_batch, c)]["rps"] / get[(ui_kind, 1, 1, c)]["rps"]
        model = get[(model_kind, 1, args.max_batch, c)]["rps"] / get[(model_kind, 1, 1, c)]["rps"]
        print(f"{name}, {c} clients, 1 replica: batched / one-at-a-time = {ui:.2f}× through the UI, "
              f"{model:.2f}× on the model deployment alone")
    print(f"processes of the cluster left: {len(left)}")


if __name__ == "__main__":
    main()
