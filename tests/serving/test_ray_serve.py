"""The whole gallery on Ray Serve: every demo endpoint through the HTTP proxy, replicas, a replica killed under load,
streaming and callbacks through handles, status, and a shutdown that leaves no process behind.

The module runs on conftest's shared local Ray (`local_ray`: 2 CPUs, no dashboard, token auth explicitly off,
loopback only) and removes its app afterwards; run it inside a loopback-only namespace (`unshare -n`, `lo` up) as
`make test` does, so Ray binds 127.0.0.1 only.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import httpx
import psutil
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from support import command_line, free_port, running

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]  # every test: Ray never stops mid-module

APP = "txgallery"
# The demos on the test cluster. Every model replica is a process with its own torch and model, so on 2 cores the
# module keeps to the two demos whose endpoints it knows; TXGALLERY_RAY_TEST_DEMOS=all (or a comma list) serves
# more, and then every endpoint they expose is called too (discovered from the app).
_CHOSEN = os.environ.get("TXGALLERY_RAY_TEST_DEMOS", "sentiment,efficiency")
DEMOS = [] if _CHOSEN == "all" else _CHOSEN.split(",")
SENTIMENT = "SentimentClassifier-minilm-rt-sentiment"

# Endpoints whose defaults would start minutes of work on 2 cores get the cheapest real run the UI allows (Gradio
# itself refuses values outside a slider's range, so a refusal would never reach the service): the call crosses the
# proxy, the UI replica and the model deployment, with progress callbacks relayed back; the output must say so.
CHEAP_INPUTS = {
    "efficiency_measure": (([], 0.5, False), "fp32"),  # only the fp32 baseline, measured
}
# `efficiency_sizes` measures BERT-base latency (minutes on 2 cores); `efficiency_distil` trains and scores three
# models. Both take the code path `efficiency_measure` takes (a call on the EfficiencyLab deployment whose progress
# callbacks are relayed back as stream events), so the suite's time goes to other endpoints.
NOT_CALLED = {"efficiency_sizes", "efficiency_distil"}



@pytest.fixture(scope="module")
def cluster(local_ray, tiny_classifier_dir):
    """The gallery app on the shared Ray: sentiment with the embedded model (2 replicas) beside a local directory (its
    own deployment), the other services with 1 replica each; Serve is shut down afterwards."""
    from ray import serve

    from txgallery.serving.ray_serve import build_app

    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"demos": DEMOS, "models": [f"sentiment=embedded,{tiny_classifier_dir}"], "num_cpus": 0.1,
                             "ui_num_cpus": 0.1, "max_batch_size": 8,
                             "deployments": {"SentimentClassifier": {"num_replicas": 2}}}),
                  name=APP, route_prefix="/")
    except BaseException:
        serve.shutdown()
        raise
    state = {"url": f"http://127.0.0.1:{port}", "processes": _serve_processes(), "up": True}
    yield state
    if state["up"]:
        serve.shutdown()


@pytest.fixture(scope="module")
def client(cluster) -> Client:
    return Client(cluster["url"] + "/", verbose=False)


def _serve_processes() -> list[psutil.Process]:
    """The live processes of Serve's actors (a Ray worker's title is `ray::` and its actor's class): the controller,
    the proxy and the replicas."""
    return [p for p in psutil.Process().children(recursive=True)
            if command_line(p).startswith(("ray::ServeController", "ray::ProxyActor", "ray::ServeReplica"))]


def _clients_per_thread(cluster) -> Callable[[], Client]:
    """A Client for each calling thread, as each browser has its own session: a failure then belongs to one call, not
    to a session stream that four threads share."""
    local = threading.local()

    def get() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(cluster["url"] + "/", verbose=False)
        return local.client

    return get


def _served(cluster) -> dict:
    return httpx.get(cluster["url"] + "/txgallery/served", timeout=30).json()


def test_checked_in_configs_name_deployments_the_builder_makes():
    """deploy/serve_config.yaml and the KubeRay manifest validate, and name only deployments the app really has."""
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from txgallery.gallery import build_gallery
    from txgallery.plugin import discover_demos
    from txgallery.serving.ray_serve import (
        INGRESS_NAME,
        IngressConfig,
        deployment_names,
    )
    from txgallery.serving.seam import collecting_services

    with collecting_services() as keys:
        build_gallery(discover_demos())
    built = set(deployment_names(keys).values()) | {INGRESS_NAME}
    with pytest.raises(ValueError, match="ui_shard"):  # a misspelt key fails the replica, not silently one shard
        IngressConfig.model_validate({"ui_shard": 2})
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    config = yaml.safe_load((deploy / "serve_config.yaml").read_text())
    manifest = yaml.safe_load((deploy / "kuberay" / "rayservice.yaml").read_text())
    for applications in (config, yaml.safe_load(manifest["spec"]["serveConfigV2"])):
        ServeDeploySchema.model_validate({"applications": applications["applications"]})
        (app,) = applications["applications"]
        assert app["import_path"] == "txgallery.serving.ray_serve:build_app"
        named = {d["name"] for d in app["deployments"]}
        assert {INGRESS_NAME, SENTIMENT} <= named and named <= built, named - built
        ingress = next(d for d in app["deployments"] if d["name"] == INGRESS_NAME)
        assert ingress["num_replicas"] == 1  # Gradio sessions live in one process
        assert IngressConfig.model_validate(ingress["user_config"]).ui_shards == 1
    assert config["http_options"]["host"] == "0.0.0.0"  # the cluster's proxy; local runs pass 127.0.0.1


def test_checked_in_configs_batch_what_the_service_classes_batch():
    """A deployment's `user_config.batched_methods` replaces its class's batched methods: the checked-in configs list
    exactly those (an empty list turned batching off for the vision deployments), and the KubeRay manifest carries
    the same applications as deploy/serve_config.yaml."""
    from pathlib import Path

    import yaml

    from txgallery.gallery import build_gallery
    from txgallery.plugin import discover_demos
    from txgallery.serving.ray_serve import (
        INGRESS_NAME,
        batched_methods,
        deployment_names,
    )
    from txgallery.serving.seam import collecting_services

    with collecting_services() as keys:
        build_gallery(discover_demos())
    declared = {name: set(batched_methods(key.cls)) for key, name in deployment_names(keys).items()}
    assert declared["ImageService-vit-fashion-mnist"] == {"predict"}  # what the vision service batches
    assert declared["ClipMatcher-conse-effnet-minilm"] == {"embed_images", "embed_texts"}
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    config = yaml.safe_load((deploy / "serve_config.yaml").read_text())
    manifest = yaml.safe_load((deploy / "kuberay" / "rayservice.yaml").read_text())
    (app,) = config["applications"]
    configured = {d["name"]: set(d["user_config"]["batched_methods"]) for d in app["deployments"]
                  if d["name"] != INGRESS_NAME and "batched_methods" in (d.get("user_config") or {})}
    assert configured, "the config sets batched_methods for no deployment"
    assert configured == {name: declared[name] for name in configured}
    # and where a class batches, the config lets batches form: more than one call each, more in flight than a batch
    for entry in app["deployments"]:
        if entry["name"] in declared and declared[entry["name"]]:
            batching = {**app["args"], **(entry.get("user_config") or {})}
            assert batching["max_batch_size"] > 1, entry["name"]
            assert entry.get("max_ongoing_requests", 64) >= batching["max_batch_size"], entry["name"]
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"] == config["applications"]


def test_app_is_running_with_a_deployment_per_model_service(cluster):
    from ray import serve

    status = serve.status().applications[APP]
    assert status.status == "RUNNING"
    deployments = status.deployments
    assert {"GalleryIngress", SENTIMENT, "EfficiencyLab-minilm-rt-sentiment"} <= set(deployments)
    assert all(d.status == "HEALTHY" for d in deployments.values())
    assert deployments[SENTIMENT].replica_states.get("RUNNING") == 2
    assert len([name for name in deployments if name.startswith("SentimentClassifier-")]) == 2  # one per model
    assert deployments["GalleryIngress"].replica_states.get("RUNNING") == 1


def _arguments(endpoint: dict) -> list:
    return [p["parameter_default"] if p["parameter_has_default"] else p["example_input"]
            for p in endpoint["parameters"]]


def _outcome(client: Client, name: str, arguments: list) -> str:
    """"ok", "refused: <message>" (a user-facing message) or "crashed" (the demo's code raised unexpectedly)."""
    try:
        client.predict(*arguments, api_name=name)
        return "ok"
    except AppError as exc:
        return "crashed" if "Something went wrong" in str(exc) else f"refused: {exc}"


def test_every_demo_endpoint_answers_through_the_proxy(cluster, client, request):
    from txgallery.plugin import discover_demos

    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = {name.lstrip("/") for name in endpoints}
    assert {"sentiment_predict", "sentiment_explain", "sentiment_batch", "efficiency_measure"} <= names
    in_process = None  # the same demos in one process (conftest's gallery): what Ray must not change
    traffic = {call.api_name: call.arguments() for entry in discover_demos() if entry.ok
               for call in getattr(entry.demo, "traffic", ())}
    called = set()
    for name, endpoint in endpoints.items():
        api = name.lstrip("/")
        if api in NOT_CALLED:
            continue
        if api in CHEAP_INPUTS:
            arguments, word = CHEAP_INPUTS[api]
            assert word in str(client.predict(*arguments, api_name=name)), api
        elif api.startswith("sentiment"):
            texts = "A warm, funny and moving film." if api != "sentiment_batch" else "Loved it.\nHated it."
            result = client.predict(*([texts] if api != "sentiment_batch" else [texts, None]), api_name=name)
            assert result is not None
        else:  # endpoints of demos that landed after this test was written: their own example inputs, and the
            # same outcome as in one process (a demo's own bug shows in both; a serving bug only on Ray)
            arguments = list(traffic.get(api, _arguments(endpoint)))  # the demo's own cheap call when it has one
            in_process = in_process or Client(request.getfixturevalue("gallery"), verbose=False)
            assert _outcome(client, name, arguments) == _outcome(in_process, name, arguments), api
        called.add(api)
    assert called == names - NOT_CALLED
    notice, badge, badge_local, label, label_local = client.predict("A warm, funny and moving film.",
                                                                    api_name="/sentiment_predict")
    assert label["label"] == "positive" and "minilm-rt-sentiment" in badge
    assert "local directory" in badge_local and label_local["label"] in {"NEG", "POS"}
    with pytest.raises(AppError, match="input is empty"):  # InputError raised in the replica, shown as a message
        client.predict("   ", api_name="/sentiment_predict")


def test_two_replicas_both_serve_requests(cluster):
    before = _served(cluster)["replicas"].get(SENTIMENT, {})
    client = _clients_per_thread(cluster)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: client().predict(f"Review number {i}: great.", api_name="/sentiment_predict"),
                                range(32)))
    assert all(label["label"] in {"positive", "negative"} for _, _, _, label, _ in results)
    after = _served(cluster)["replicas"][SENTIMENT]
    grown = {replica: count - before.get(replica, 0) for replica, count in after.items()}
    assert sum(grown.values()) >= 32  # the predictions, and the attributions Gradio chains after them
    assert len([n for n in grown.values() if n > 0]) == 2, grown


def test_streaming_and_callbacks_through_handles(cluster):
    """The seam's contracts over Ray: generator methods stream (and stop when closed), callbacks reach the caller."""
    from ray import serve

    from txgallery.serving import seam as serving
    from txgallery.serving.ray_serve import (
        EchoService,
        ModelService,
        RayServeBackend,
        ServiceKey,
    )

    handle = serve.run(ModelService.options(name="Echo", ray_actor_options={"num_cpus": 0.1}).bind(
        "txgallery.serving.ray_serve:EchoService", ()), name="echo", route_prefix=None)
    key = ServiceKey(EchoService, ())
    previous = serving.get_backend()
    serving.set_backend(RayServeBackend({key: handle}, {key: "Echo"}))
    try:
        echo = serving.connect(EchoService)
        assert echo.echo(["a", "b"]) == ["a", "b"]
        with ThreadPoolExecutor(6) as pool:  # concurrent calls are batched and split back to their callers
            assert list(pool.map(lambda i: echo.echo([i, i + 1]), range(12))) == [[i, i + 1] for i in range(12)]
        assert list(echo.countdown(4)) == [4, 3, 2, 1]
        stream = echo.countdown(1000)
        assert [next(stream), next(stream)] == [1000, 999]
        stream.close()
        steps = []
        assert echo.work(3, progress=lambda step, total: steps.append((step, total))) == 3
        assert steps == [(1, 3), (2, 3), (3, 3)]
    finally:
        serving.set_backend(previous)
        serve.delete("echo")


def test_killing_a_replica_under_load_fails_no_request(cluster):
    import ray
    from ray import serve

    failures, answered, stop = [], [], threading.Event()
    client = _clients_per_thread(cluster)

    def load():
        while not stop.is_set():
            try:
                client().predict("Under load, still a fine film.", api_name="/sentiment_predict")
                answered.append(time.monotonic())
            except Exception as exc:  # counted, not raised: the test reports them all
                failures.append(repr(exc))

    retried_before = _served(cluster)["retried"]
    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        while len(answered) < 8:
            time.sleep(0.2)
        victim = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith(f"SERVE_REPLICA::{APP}#{SENTIMENT}#"))
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        killed_at = time.monotonic()
        deadline = killed_at + 300
        while time.monotonic() < deadline:  # until Serve has noticed and replaced it with a new replica
            replicas = serve.status().applications[APP].deployments[SENTIMENT].replica_states
            alive = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith(f"SERVE_REPLICA::{APP}#{SENTIMENT}#")]
            if victim["name"] not in alive and len(alive) == 2 and replicas == {"RUNNING": 2}:
                break
            time.sleep(1)
        else:
            pytest.fail(f"the killed replica was not replaced: {replicas}")
        replaced_after = time.monotonic() - killed_at
        settled = len(answered)
        while len(answered) < settled + 8:
            time.sleep(0.2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    retried = _served(cluster)["retried"] - retried_before
    print(f"answered {len(answered)} ({sum(t > killed_at for t in answered)} after the kill), failed "
          f"{len(failures)}, retried {retried} (at most 4 were in flight); replaced after {replaced_after:.0f} s")
    assert failures == []
    assert retried <= 4  # only the calls that were on the killed replica
    assert any(t > killed_at for t in answered)


def test_serve_shutdown_leaves_no_process_behind(cluster):
    """Every process of Serve's actors (controller, proxy, replicas) ends with `serve.shutdown()`; Ray's own processes
    end with the shared Ray, whose teardown (conftest's LocalRay.stop) checks the same."""
    from ray import serve

    started = {p.pid: p for p in [*cluster["processes"], *_serve_processes()]}
    assert len(started) >= 5, [command_line(p) for p in started.values()]  # controller, proxy, ingress, replicas
    serve.shutdown()
    cluster["up"] = False
    deadline = time.monotonic() + 60
    alive = list(started.values())
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if running(p)]
        time.sleep(0.5)
    assert alive == [], [command_line(p) for p in alive]
