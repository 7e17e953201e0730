"""The cluster operator's path: two Ray nodes, `serve deploy` of the shipped config, every page through the proxy.

As deploy/README.md tells an operator (on one machine, on 127.0.0.1):

    ray start --head ... --num-gpus G          # node 1: GCS, dashboard (serve deploy talks to its REST API)
    ray start --address HEAD:PORT --num-gpus G # node 2: a second raylet
    serve deploy deploy/serve_config.yaml      # the shipped file; only http_options host and port differ here
    serve status                               # every application RUNNING, every deployment HEALTHY

Both nodes declare GPUs so that the config's fractional `num_gpus` are really scheduled (the models run on the CPU:
there is no CUDA here). The Ray processes get a fresh HOME outside the system's temp directory (a cold
`~/.cache/txgallery`, and the directory Gradio would not serve from unless told to) and run from a working directory
outside the repository. Then every page's main action (tests/userpaths/userpath_actions.py) goes through the proxy,
`serve status` must still show everything healthy, and the model replicas must sit on both nodes. Teardown is
`serve shutdown`, then the cluster's own processes are stopped (by pid: `ray stop --force` would stop every Ray on the
machine, other users' included); no process of the cluster may be left.

Run it inside a loopback-only network namespace, as `make test` does, so that Ray binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from support import free_port
from userpath_actions import MAIN_ACTIONS, MainAction, _check_sentiment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first test also starts the cluster (minutes)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "serve_config.yaml"
BIN = Path(sys.executable).parent  # ray and serve of this environment
APP = "txgallery"
INGRESS = "GalleryIngress"
# Per node. The shipped config (with the builder's defaults for the services it does not list: the ViT and text
# attention explorers) asks for 16 logical CPUs (4 of them the efficiency lab's) and 2.5 GPUs, 0.25 per model
# replica: each node declares 10 CPUs and 2 GPUs, so the whole app fits with room for the classifier to scale and for
# the fine-tuning playground's Ray Train workers. Logical CPUs are a scheduling budget; the machine has fewer cores.
NODE_CPUS, NODE_GPUS = 10, 2
OBJECT_STORE_BYTES = 256 * 1024 ** 2  # per node (Ray's default is 30% of memory; the app passes small objects)
READY_TIMEOUT_S = 600
PR_SET_CHILD_SUBREAPER = 36

TIMINGS: dict[str, float] = {}



def _outside_temp_dir() -> Path:
    """A fresh directory outside the system's temp directory (Gradio serves files from under it and the working
    directory only, so a cluster whose HOME lies there hides what users see)."""
    temp = Path(tempfile.gettempdir()).resolve()
    for parent in (Path("/var/tmp"), Path.home() / ".cache"):
        if parent.is_dir() and os.access(parent, os.W_OK) and temp not in parent.resolve().parents \
                and parent.resolve() != temp:
            return Path(tempfile.mkdtemp(prefix="txgallery-cluster-", dir=parent))
    pytest.fail(f"no writable directory outside {temp} for the cluster's HOME")


def _subreaper(on: bool) -> None:
    """Orphans of this process's children (the daemons `ray start` leaves behind) become its children: the test
    can then find, stop and reap every process of its cluster by pid."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")


def _cmdline(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


def _alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


class Cluster:
    """The two-node cluster, the CLI calls an operator makes on it, and a way to stop exactly its processes."""

    def __init__(self) -> None:
        self.base = _outside_temp_dir()
        self.home, self.work = self.base / "home", self.base / "work"
        self.home.mkdir()
        self.work.mkdir()
        # Ray's session directory holds unix sockets (paths of at most 107 bytes): a short one in the temp directory
        self.ray_temp = Path(tempfile.mkdtemp(prefix="txgray-"))
        self.gcs_port, self.dashboard_port, self.http_port = free_port(), free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.url = f"http://127.0.0.1:{self.http_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TXGALLERY_", "RAY_"))}
        env.update(HOME=str(self.home), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
                   PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        self.env = env
        self.before = {p.pid for p in psutil.Process().children(recursive=True)}
        self.memory_peak = {"rss": 0, "used": 0}
        self.used_before = psutil.virtual_memory().total - psutil.virtual_memory().available
        self._sampling = threading.Event()
        self._seen: dict[int, psutil.Process] = {}
        self._seen_lock = threading.Lock()
        self._down: list[str] | None = None

    # --- the operator's commands -------------------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 300, check: bool = True, stdout_only: bool = False) -> str:
        done = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        output = done.stdout + done.stderr
        if check and done.returncode != 0:
            raise AssertionError(f"`{' '.join(args)}` exited with {done.returncode}:\n{output[-6000:]}")
        return done.stdout if stdout_only else output

    def start(self) -> None:
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={NODE_CPUS}", f"--num-gpus={NODE_GPUS}",
                  f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats"]
        self.run("ray", "start", "--head", f"--port={self.gcs_port}", "--include-dashboard=true",
                 "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                 f"--temp-dir={self.ray_temp}", *common)
        # a second raylet on the same machine: its dashboard agent needs a port of its own (the head's is 52365)
        self.run("ray", "start", f"--address=127.0.0.1:{self.gcs_port}",
                 f"--dashboard-agent-listen-port={free_port()}", *common)

    def status(self) -> dict:
        """`serve status`, parsed (it prints YAML)."""
        return yaml.safe_load(self.run("serve", "status", "-a", self.dashboard, timeout=120, stdout_only=True)) or {}

    def status_text(self) -> str:
        return self.run("serve", "status", "-a", self.dashboard, timeout=120, check=False)

    def nodes(self) -> list[dict]:
        from ray.util.state import list_nodes

        return [node.asdict() for node in list_nodes(address=self.dashboard)]

    def serve_details(self) -> dict:
        """The Serve REST API's view: applications, deployments and each replica's node."""
        return httpx.get(f"{self.dashboard}/api/serve/applications/", timeout=60).raise_for_status().json()

    # --- the cluster's processes -------------------------------------------------------------------------------------

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: descendants of this test process that it did not have before (the
        daemons are reparented here, see `_subreaper`), and any process whose command line names the cluster's
        session directory."""
        own = {p.pid: p for p in psutil.Process().children(recursive=True) if p.pid not in self.before}
        for process in psutil.process_iter():
            if str(self.ray_temp) in _cmdline(process):
                own.setdefault(process.pid, process)
                with contextlib.suppress(psutil.Error):
                    for child in process.children(recursive=True):
                        own.setdefault(child.pid, child)
        return [p for p in own.values() if _alive(p)]

    def seen_processes(self) -> list[psutil.Process]:
        """Every process of the cluster seen so far (psutil handles: a recycled pid does not count as alive)."""
        with self._seen_lock:
            return list(self._seen.values())

    def teardown(self) -> list[str]:
        """`serve shutdown -y`, then `stop`; what is still alive. Only the first call does anything."""
        if self._down is None:
            start = time.monotonic()
            self.run("serve", "shutdown", "-y", "-a", self.dashboard, timeout=180, check=False)
            TIMINGS["serve shutdown"] = time.monotonic() - start
            start = time.monotonic()
            self._sampling.set()
            self._down = self.stop()
            TIMINGS["stop the cluster's processes"] = time.monotonic() - start
        return self._down

    def stop(self) -> list[str]:
        """Terminate the cluster's processes (SIGTERM, then SIGKILL after 15 s); what is still alive after that."""
        victims = self.processes()
        with self._seen_lock:
            for process in victims:
                self._seen.setdefault(process.pid, process)
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(victims, timeout=15)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        time.sleep(1)
        return [f"{p.pid} {_cmdline(p)[:120]}" for p in self.processes()]

    def sample_memory(self) -> None:
        """Until stopped: the peak of the cluster's summed RSS and of the machine's used memory, every 2 s."""
        while not self._sampling.wait(2):
            rss = 0
            for process in self.processes():
                with self._seen_lock:
                    self._seen.setdefault(process.pid, process)
                with contextlib.suppress(psutil.Error):
                    rss += process.memory_info().rss
            memory = psutil.virtual_memory()
            self.memory_peak["rss"] = max(self.memory_peak["rss"], rss)
            self.memory_peak["used"] = max(self.memory_peak["used"], memory.total - memory.available)

    # --- what a hung call fails with ---------------------------------------------------------------------------------

    def diagnosis(self) -> str:
        """`serve status`, the Python stacks of every Serve replica (py-spy) and the tail of the Serve logs."""
        parts = ["$ serve status", self.status_text()]
        py_spy = BIN / "py-spy"
        for process in self.processes():
            name = _cmdline(process)
            if name.startswith("ray::ServeReplica") and py_spy.exists():
                dump = subprocess.run([str(py_spy), "dump", "--pid", str(process.pid)], capture_output=True,
                                      text=True, timeout=60)
                parts += [f"$ py-spy dump --pid {process.pid}  # {name.split()[0]}", dump.stdout[-4000:]]
        return "\n".join([*parts, self.log_tails()])

    def log_tails(self, lines: int = 30, only: str = "") -> str:
        """The last lines of the UI replica's log and of the Serve logs written to last."""
        logs = sorted((self.ray_temp / "session_latest" / "logs" / "serve").glob("*.log"),
                      key=lambda p: p.stat().st_mtime)
        chosen = [log for log in logs if INGRESS in log.name] + [log for log in logs[-8:] if INGRESS not in log.name]
        return "\n".join(f"--- {log.name} (last {lines} lines)\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-lines:]) for log in chosen if only in log.name)


def _shipped_config_for(cluster: Cluster) -> Path:
    """deploy/serve_config.yaml with only http_options.host and .port changed; asserts nothing else differs."""
    shipped = yaml.safe_load(CONFIG.read_text())
    local = copy.deepcopy(shipped)
    local["http_options"].update(host="127.0.0.1", port=cluster.http_port)
    path = cluster.work / "serve_config.yaml"
    path.write_text(yaml.safe_dump(local, sort_keys=False))
    written = yaml.safe_load(path.read_text())
    for config in (shipped, written):
        config["http_options"] = {k: v for k, v in config["http_options"].items() if k not in ("host", "port")}
    assert written == shipped  # the shipped file, not a test's variant of it
    assert yaml.safe_load(path.read_text())["http_options"]["host"] == "127.0.0.1"
    return path


def _two_shard_config_for(cluster: Cluster) -> Path:
    """deploy/serve_config.yaml as deploy/README "UI shards" tells an operator to edit it: `ui_shards: 2` in the UI
    ingress's user_config, and the commented `txgallery-ui-1` application at the end uncommented."""
    text, shard_app = CONFIG.read_text(), "# - name: txgallery-ui-1"
    assert "      ui_shards: 1 " in text and f"\n{shard_app}" in text, "the shipped file's shard lines moved"
    head, tail = text.replace("      ui_shards: 1 ", "      ui_shards: 2 ").split(f"\n{shard_app}", 1)
    tail = "\n".join(line[2:] if line.startswith("# ") else line for line in f"{shard_app}{tail}".splitlines())
    config = yaml.safe_load(f"{head}\n{tail}")
    config["http_options"].update(host="127.0.0.1", port=cluster.http_port)
    path = cluster.work / "serve_config_two_shards.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _unhealthy(status: dict) -> list[str]:
    """What in a parsed `serve status` is not RUNNING / HEALTHY (empty when everything is)."""
    problems = []
    applications = status.get("applications") or {}
    if APP not in applications:
        return [f"application {APP} missing: {sorted(applications)}"]
    app = applications[APP]
    if app.get("status") != "RUNNING":
        problems.append(f"application {APP}: {app.get('status')} {app.get('message', '')}".strip())
    for name, deployment in (app.get("deployments") or {}).items():
        if deployment.get("status") != "HEALTHY" or set(deployment.get("replica_states") or {}) != {"RUNNING"}:
            problems.append(f"{name}: {deployment.get('status')} {deployment.get('replica_states')} "
                            f"{deployment.get('message', '')}".strip())
    for node, state in (status.get("proxies") or {}).items():
        if state != "HEALTHY":
            problems.append(f"proxy on {node}: {state}")
    return problems


def _wait_until_healthy(cluster: Cluster, timeout_s: float) -> dict:
    deadline, status, problems = time.monotonic() + timeout_s, {}, ["no status yet"]
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            # the REST API is cheap to poll; `serve status` (a process that imports Ray) runs once the app looks done
            app = (cluster.serve_details().get("applications") or {}).get(APP) or {}
            if app.get("status") not in ("RUNNING", "DEPLOY_FAILED") and time.monotonic() < deadline - 15:
                time.sleep(2)
                continue
            status = cluster.status()
            problems, before = _unhealthy(status), problems
            if problems != before:
                print(f"[{timeout_s - (deadline - time.monotonic()):.0f} s] not yet: {'; '.join(problems)}",
                      flush=True)
            if not problems and (status["applications"][APP].get("deployments") or {}):
                return status
            if (status.get("applications") or {}).get(APP, {}).get("status") == "DEPLOY_FAILED":
                break
        time.sleep(2)
    pytest.fail(f"the app was not healthy within {timeout_s:.0f} s: {problems}\n{cluster.diagnosis()}")


def test_the_ui_replica_builds_pages_that_call_their_service_while_built():
    """No cluster: GalleryIngress builds the gallery off its event loop. A page may call its service while it is built
    (the ViT and CLIP pages did, through a component whose value was a function); a handle's blocking `.result()`
    refuses to run on an event loop, as these stand-in handles do, and such pages were error pages on the cluster."""
    import asyncio
    import types

    import gradio as gr
    from starlette.testclient import TestClient

    from txgallery.gallery import build_gallery
    from txgallery.plugin import Demo, DemoEntry
    from txgallery.serving.ray_serve import (
        EchoService,
        GalleryArgs,
        GalleryIngress,
        RayServeBackend,
        deployment_names,
    )
    from txgallery.serving.seam import (
        LocalBackend,
        collecting_services,
        connect,
        get_backend,
        set_backend,
    )

    def build() -> gr.Blocks:
        echo = connect(EchoService)
        with gr.Blocks() as page:
            gr.Markdown(echo.echo(["asked while the page was built"])[0])
            text = gr.Textbox()
            gr.Button("Echo").click(lambda value: echo.echo([value])[0], text, text, api_name="echo_echo")
        return page

    def entries() -> list[DemoEntry]:
        return [DemoEntry(name="echo", origin="tests", demo=Demo(slug="echo", title="Echo", description="d",
                                                                   build=build))]

    class Response:
        def __init__(self, answer):
            self.answer = answer

        def result(self):
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop()
                raise AssertionError("Sync methods should not be called from within an `asyncio` event loop.")
            return "replica-1", self.answer()

    class Handle:  # handle.call.remote(method, args, kwargs).result(), as RayServeBackend calls a deployment
        def __init__(self, key):
            self.key, self.call = key, self

        def remote(self, method, args, kwargs):
            calls.append(method)
            return Response(lambda: local.call(self.key, method, args, kwargs))

    with collecting_services() as keys:
        build_gallery(entries())
    names, local, calls = deployment_names(keys), LocalBackend(), []
    backend = RayServeBackend({key: Handle(key) for key in names}, names)
    previous = get_backend()
    set_backend(backend)
    try:
        ingress = types.SimpleNamespace(args=GalleryArgs(), backend=backend, entries=entries(), shard=0, ui_shards=1)
        app = asyncio.run(GalleryIngress.func_or_class.__serve_build_asgi_app__(ingress))
    finally:
        set_backend(previous)
    with TestClient(app) as http:
        config = str(http.get("/config").json())
    assert calls == ["echo"]  # through the stand-in handle, while the page was built
    assert "build() failed" not in config
    assert "asked while the page was built" in config and "echo_echo" in config


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster()
    _subreaper(True)
    sampler = threading.Thread(target=cluster.sample_memory, daemon=True)
    sampler.start()
    try:
        start = time.monotonic()
        cluster.start()
        TIMINGS["ray start (2 nodes)"] = time.monotonic() - start
        config = _shipped_config_for(cluster)
        start = time.monotonic()
        cluster.run("serve", "deploy", str(config), "-a", cluster.dashboard, timeout=300)
        TIMINGS["serve deploy (accepted)"] = time.monotonic() - start
        status = _wait_until_healthy(cluster, READY_TIMEOUT_S)
        TIMINGS["serve deploy until every deployment HEALTHY"] = time.monotonic() - start
        print("\n" + yaml.safe_dump(status, sort_keys=False))
        yield cluster
    finally:
        try:
            cluster.teardown()  # the last test has done it, unless something failed before
        finally:
            sampler.join(10)
            _subreaper(False)
            shutil.rmtree(cluster.base, ignore_errors=True)
            shutil.rmtree(cluster.ray_temp, ignore_errors=True)
            print("\ncluster phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMINGS.items()))
            print(f"memory peak: the cluster's processes, summed RSS {cluster.memory_peak['rss'] / 2**30:.1f} GiB; "
                  f"the machine's used memory {cluster.memory_peak['used'] / 2**30:.1f} GiB "
                  f"(before the cluster: {cluster.used_before / 2**30:.1f} GiB)")


@pytest.fixture(scope="module")
def client(cluster):
    from gradio_client import Client

    return Client(cluster.url + "/", verbose=False)


def test_the_shipped_config_deploys_on_two_nodes_and_every_deployment_is_healthy(cluster):
    status = cluster.status()
    assert _unhealthy(status) == []
    deployments = status["applications"][APP]["deployments"]
    shipped = {d["name"] for d in yaml.safe_load(CONFIG.read_text())["applications"][0]["deployments"]}
    assert INGRESS in deployments and shipped <= set(deployments), shipped - set(deployments)
    nodes = [n for n in cluster.nodes() if n["state"] == "ALIVE"]
    assert len(nodes) == 2, nodes
    assert len(status["proxies"]) == 2, status["proxies"]  # proxy_location: EveryNode


def test_every_page_is_built_and_offers_its_main_action(cluster, client):
    """No demo is an error page on the cluster, and every main action is an endpoint of the served gallery."""
    config = httpx.get(cluster.url + "/config", timeout=60).raise_for_status().json()
    broken = [c["props"].get("value") for c in config["components"]
              if "tx-broken" in str(c.get("props", {}).get("value", "")) or "Reason:" in str(c.get("props", {}).get(
                  "value", ""))]
    endpoints = {name.lstrip("/") for name in client.view_api(return_format="dict", print_info=False)
                 ["named_endpoints"]}
    missing = {action.api_name for action in MAIN_ACTIONS} - endpoints
    assert not broken and not missing, (f"broken pages: {broken}\nmissing endpoints: {sorted(missing)}\n"
                                        + cluster.log_tails(80, only=INGRESS))


@pytest.mark.parametrize("action", MAIN_ACTIONS, ids=[f"{a.page}-{a.api_name}-{i}" for i, a in enumerate(MAIN_ACTIONS)])
def test_every_page_main_action_answers_through_the_proxy(cluster, client, action: MainAction, request):
    start = time.monotonic()
    try:
        action.run(client, on_timeout=cluster.diagnosis)
    finally:
        TIMINGS[request.node.callspec.id] = time.monotonic() - start


def test_after_the_calls_everything_is_healthy_and_replicas_are_on_both_nodes(cluster):
    status = cluster.status()
    assert _unhealthy(status) == [], cluster.status_text()
    alive = {n["node_id"] for n in cluster.nodes() if n["state"] == "ALIVE"}
    assert len(alive) == 2
    deployments = cluster.serve_details()["applications"][APP]["deployments"]
    layout: dict[str, list[str]] = {}
    for name, deployment in deployments.items():
        for replica in deployment["replicas"]:
            assert replica["state"] == "RUNNING", (name, replica)
            if name != INGRESS:
                layout.setdefault(replica["node_id"], []).append(name)
    print("\nmodel replicas per node:\n" + json.dumps(layout, indent=1))
    assert set(layout) == alive, f"model replicas on {len(layout)} of the 2 nodes: {layout}"
    # every model call of the main actions went to a model deployment; none ran inside the UI replica
    served = httpx.get(cluster.url + "/txgallery/served", timeout=30).json()
    print("calls per deployment and replica:", json.dumps(served))
    assert served["in_ui_replica"] == [], served["in_ui_replica"]
    answered = {name for name, replicas in served["replicas"].items() if sum(replicas.values())}
    used = {"SentimentClassifier-minilm-rt-sentiment", "TextGenerator-gpt2-shakespeare", "TextGenerator-smollm2-135m",
            "TextToText-t5-rt-text2text", "ImageService-vit-fashion-mnist", "ClipMatcher-conse-effnet-minilm",
            "EfficiencyLab-minilm-rt-sentiment", "FinetunePlayground-minilm-l6-smollm2-135m",
            "AttentionExplorer-minilm-l6", "AttentionExplorer-smollm2-135m"}
    assert used <= answered, used - answered


def test_two_ui_shards_deploy_over_the_running_app_and_share_its_models(cluster):
    """deploy/README "UI shards": the shipped file edited for two shards, deployed over the running gallery. The
    change applies in place (no replica of the running app restarts: it had no spare CPU for a rolling update), a
    browser's visits are spread (the query kept), and both shards answer through the same model replicas."""
    from gradio_client import Client

    cluster.run("serve", "deploy", str(_two_shard_config_for(cluster)), "-a", cluster.dashboard, timeout=300)
    deadline, states = time.monotonic() + READY_TIMEOUT_S, {}
    while time.monotonic() < deadline:
        states = {name: app.get("status") for name, app in (cluster.status().get("applications") or {}).items()}
        if states == {APP: "RUNNING", "txgallery-ui-1": "RUNNING"}:
            break
        time.sleep(3)
    assert states == {APP: "RUNNING", "txgallery-ui-1": "RUNNING"}, cluster.status_text()
    visits = [httpx.get(cluster.url + "/sentiment?text=hi", headers={"Accept": "text/html"}, timeout=60)
              for _ in range(2)]
    assert sorted((v.status_code, v.headers.get("location")) for v in visits) == [
        (200, None), (307, "/ui-1/sentiment?text=hi")]
    replicas = {}
    for prefix, shard in (("", 0), ("/ui-1", 1)):
        _check_sentiment(Client(f"{cluster.url}{prefix}/", verbose=False).predict(
            "A wonderful, warm and funny film.", api_name="/sentiment_predict"))
        served = httpx.get(f"{cluster.url}{prefix}/txgallery/served", timeout=30).json()
        assert served["shard"] == shard and served["in_ui_replica"] == [], served
        replicas[shard] = set(served["replicas"]["SentimentClassifier-minilm-rt-sentiment"])
    deployment = cluster.serve_details()["applications"][APP]["deployments"]["SentimentClassifier-minilm-rt-sentiment"]
    ids = {replica["replica_id"] for replica in deployment["replicas"]}
    assert replicas[0] and replicas[1] and replicas[0] | replicas[1] <= ids, (replicas, ids)  # the main app's


def test_teardown_leaves_no_ray_process(cluster):
    """`serve shutdown`, then the cluster's processes stopped: none is left (the last test of the module)."""
    seen = cluster.seen_processes()
    assert any("raylet" in _cmdline(p) for p in seen) and any("gcs_server" in _cmdline(p) for p in seen)
    left = cluster.teardown()
    assert left == [], left
    still = [p for p in seen if _alive(p)]
    assert still == [], [f"{p.pid} {_cmdline(p)[:120]}" for p in still]
    rayish = [f"{p.pid} {_cmdline(p)[:120]}" for p in psutil.process_iter()
              if any(word in _cmdline(p) for word in ("ray", "raylet", "gcs_server"))
              and str(cluster.ray_temp) in _cmdline(p)]
    assert rayish == []
