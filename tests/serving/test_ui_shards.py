"""Two UI shards on Ray Serve: the main application (model deployments + UI shard 0 at `/`) and one more UI shard
(`build_ui_shard`, at `/ui-1`) that calls the same model deployments; page visits spread over both, Gradio's own
requests never move, and a browser session on shard 1 works end to end.

Runs on conftest's shared local Ray (`local_ray`), like tests/serving/test_ray_serve.py, inside a loopback-only
namespace; one Serve instance for the whole module, shut down at its end.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from support import CHROMIUM, CHROMIUM_FLAGS, free_port

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]

APP, SHARD_APP, SHARD_PREFIX = "txgallery", "txgallery-ui-1", "/ui-1"
SENTIMENT = "SentimentClassifier-minilm-rt-sentiment"
ARGS = {"demos": ["sentiment"], "num_cpus": 0.1, "ui_num_cpus": 0.1}
TWO_SHARDS = {"deployments": {"GalleryIngress": {"user_config": {"ui_shards": 2}}}}  # the main application's ingress
# what a browser sends when it opens a page; programs (httpx, gradio_client) send `*/*` or JSON
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
REVIEW = "A warm, funny and moving film."


@pytest.fixture(scope="module")
def shards(local_ray) -> str:
    """The main application with `ui_shards: 2` at `/` and UI shard 1 at `/ui-1`; the proxy's URL."""
    from ray import serve

    from txgallery.serving.ray_serve import build_app, build_ui_shard

    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # both at once, as `serve deploy` of a config does: the shard waits for the main application's deployments
        serve.run_many([serve.RunTarget(build_ui_shard({**ARGS, "shard": 1, "models_app": APP}), name=SHARD_APP,
                                        route_prefix=SHARD_PREFIX),
                        serve.RunTarget(build_app({**ARGS, **TWO_SHARDS}), name=APP, route_prefix="/")])
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _label(result) -> str:
    """The top label of `/sentiment_predict`'s answer (a notice, a badge and a label per configured model)."""
    return next(value["label"] for value in result if isinstance(value, dict) and "label" in value)


def _served(url: str) -> dict:
    return httpx.get(url + "/txgallery/served", timeout=60).json()


def _commented_shard(text: str) -> list[str]:
    """The lines of the commented txgallery-ui-1 application, uncommented (at the indentation of the text's own)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("# - name: txgallery-ui-1"))
    indent = lines[start].index("#")
    block = []
    for line in lines[start:]:
        if not line[indent:].startswith("#"):
            break
        block.append(line[indent + 2:])
    return block


@pytest.mark.parametrize("path", ["serve_config.yaml", "kuberay/rayservice.yaml"])
def test_the_configs_commented_second_shard_is_a_valid_application(path):
    """deploy/serve_config.yaml and the KubeRay manifest ship one shard; their commented txgallery-ui-1 application,
    uncommented beside the txgallery app whose GalleryIngress has `ui_shards: 2` in its user_config, is a valid Serve
    config whose shard sits where shard 0's redirects point."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from txgallery.serving import ray_serve

    text = (Path(__file__).resolve().parents[2] / "deploy" / path).read_text()
    if path.startswith("kuberay"):
        text = yaml.safe_load(text)["spec"]["serveConfigV2"]
    (main,) = yaml.safe_load(text)["applications"]
    (shard,) = yaml.safe_load("\n".join(_commented_shard(text)))
    (ingress,) = [d for d in main["deployments"] if d["name"] == ray_serve.INGRESS_NAME]
    assert ingress["user_config"] == {"ui_shards": 1}  # where to switch shard 0's redirects on, in place
    ingress["user_config"]["ui_shards"] = 2
    ServeDeploySchema.model_validate({"applications": [main, shard]})
    args = ray_serve.UiShardArgs.model_validate(shard["args"])
    assert (args.models_app, shard["route_prefix"]) == (main["name"], f"{ray_serve.SHARD_PREFIX}{args.shard}")
    assert shard["import_path"] == "txgallery.serving.ray_serve:build_ui_shard"
    assert [(d["name"], d["num_replicas"]) for d in shard["deployments"]] == [(ray_serve.INGRESS_NAME, 1)]


def test_only_a_browsers_page_visit_is_sent_to_another_shard_and_the_root_path_is_kept():
    """SpreadVisitors alone, on ASGI scopes: under a global root path (Serve's `http_options.root_path`) the redirect
    keeps it; other methods, other paths and programs' requests reach the app, and turns go 0, 1, 2, 0, …"""
    import asyncio

    from txgallery.serving.ray_serve import SpreadVisitors

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    def visit(spread, method="GET", path="/gallery/sentiment", accept=BROWSER["accept"], query=b"text=hi"):
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "root_path": "/gallery", "query_string": query,
                 "headers": [(b"accept", accept.encode())]}
        asyncio.run(spread(scope, None, send))
        return dict(sent[0]["headers"])[b"location"].decode() if sent else None

    spread = SpreadVisitors(app, pages={"sentiment"}, shards=lambda: 3)
    assert [visit(spread) for _ in range(4)] == [None, "/gallery/ui-1/sentiment?text=hi",
                                                 "/gallery/ui-2/sentiment?text=hi", None]
    assert visit(spread, path="/gallery/", query=b"") == "/gallery/ui-1/"  # the landing page, at turn 4
    for other in ({"method": "HEAD"}, {"method": "POST"}, {"accept": "*/*"}, {"path": "/gallery/config"},
                  {"path": "/gallery/gradio_api/info"}, {"path": "/gallery/sentiment/extra"}):
        assert visit(spread, **other) is None, other
    assert len(reached) == 2 + 6


def test_a_shard_holds_only_a_ui_and_calls_the_main_apps_model_deployment(shards):
    from ray import serve

    applications = serve.status().applications
    assert set(applications[SHARD_APP].deployments) == {"GalleryIngress"}
    assert SENTIMENT in applications[APP].deployments
    answers = {prefix: _label(Client(f"{shards}{prefix}/", verbose=False).predict(REVIEW, api_name="/sentiment_predict"))
               for prefix in ("", SHARD_PREFIX)}
    assert answers == {"": "positive", SHARD_PREFIX: "positive"}
    main, shard = _served(shards), _served(shards + SHARD_PREFIX)
    assert (main["shard"], shard["shard"]) == (0, 1)
    # each UI counted its own calls, and both name the one replica of the main application's deployment
    assert set(main["replicas"][SENTIMENT]) == set(shard["replicas"][SENTIMENT])
    assert len(main["replicas"][SENTIMENT]) == 1 == applications[APP].deployments[SENTIMENT].replica_states["RUNNING"]
    assert main["in_ui_replica"] == shard["in_ui_replica"] == []


def test_uploads_downloads_and_the_queue_work_under_the_prefix(shards, tmp_path):
    """The batch endpoint through shard 1: the CSV goes up to the shard, its predictions come back as a file that
    the client downloads from the shard, and the queue's event stream answers there."""
    reviews = tmp_path / "reviews.csv"
    reviews.write_text(f"text\n{REVIEW}\nA dull, lifeless mess.\n")
    client = Client(f"{shards}{SHARD_PREFIX}/", verbose=False)
    assert client.config["root"].rstrip("/").endswith(SHARD_PREFIX)
    table, download, _ = client.predict("", handle_file(reviews), api_name="/sentiment_batch")
    assert len(table["data"]) == 2
    assert "positive" in Path(download).read_text()
    config = httpx.get(f"{shards}{SHARD_PREFIX}/config", timeout=60).json()
    assert config["root"].rstrip("/").endswith(SHARD_PREFIX)


def test_page_visits_are_spread_over_the_shards_and_nothing_else_moves(shards):
    with httpx.Client(base_url=shards, timeout=60, follow_redirects=False) as http:
        for path, query in (("/", ""), ("/sentiment", "?text=Great+film")):
            answers = [http.get(path + query, headers=BROWSER) for _ in range(2)]  # consecutive: one turn each
            assert sorted(a.status_code for a in answers) == [200, 307], path
            redirect = next(a for a in answers if a.status_code == 307)
            target = f"{SHARD_PREFIX}/" if path == "/" else f"{SHARD_PREFIX}{path}{query}"  # the query is kept
            assert redirect.headers["location"] == target
            served_there = http.get(target, headers=BROWSER)
            assert served_there.status_code == 200 and "<html" in served_there.text.lower()
        for _ in range(2):  # a shard never sends a visitor on, and Gradio's own requests and programs stay put
            assert http.get(f"{SHARD_PREFIX}/sentiment", headers=BROWSER).status_code == 200
            assert http.get("/config", headers=BROWSER).status_code == 200
            assert http.get("/gradio_api/info", headers=BROWSER).status_code == 200
            assert http.get("/").status_code == 200  # no text/html in Accept: a program
        event = http.post("/gradio_api/call/ping", json={"data": ["hello"]}, headers=BROWSER)
        assert event.status_code == 200 and event.json()["event_id"]
        result = http.get(f"/gradio_api/call/ping/{event.json()['event_id']}", headers=BROWSER)
        assert result.status_code == 200 and "hello" in result.text


def test_a_shard_whose_models_app_lacks_a_deployment_says_so(shards):
    from txgallery.serving.ray_serve import model_handles

    assert set(model_handles([SENTIMENT], APP, wait_s=0)) == {SENTIMENT}
    with pytest.raises(RuntimeError, match="give this UI shard its demos, models and config"):
        model_handles([SENTIMENT, "SentimentClassifier-elsewhere"], APP, wait_s=0)


@pytest.mark.e2e
def test_a_browser_session_on_shard_1_works_end_to_end(shards):
    """Debian's chromium opens shard 1's landing page, follows the sentiment card, runs the review: every request of
    the session stays under the shard's prefix."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for the browser tests: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    outside = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("request", lambda r: None if r.url.startswith(shards + SHARD_PREFIX) else outside.append(r.url))
            page.goto(f"{shards}{SHARD_PREFIX}/", wait_until="load", timeout=120_000)
            page.locator('a.tx-card[data-demo="sentiment"]').click()
            page.wait_for_url(f"{shards}{SHARD_PREFIX}/sentiment*", timeout=60_000)
            page.get_by_label("Text").first.fill(REVIEW)
            page.locator("#sentiment-run").click()
            expect(page.locator("#sentiment-label-0")).to_contain_text("%", timeout=120_000)
            assert "positive" in page.locator("#sentiment-label-0").inner_text().lower()
            page.wait_for_function("() => new URLSearchParams(location.search).get('text') !== null", timeout=30_000)
            assert page.url.startswith(f"{shards}{SHARD_PREFIX}/sentiment?")  # the deep link keeps the prefix
        finally:
            browser.close()
    assert [url for url in outside if url.startswith(shards)] == []
