"""The gallery app end to end over HTTP: gradio_client and a raw HTTP client against the running app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(gallery) -> Client:
    return Client(gallery, verbose=False)


def test_landing_page_and_demo_pages_are_served(gallery):
    with httpx.Client(base_url=gallery, timeout=60) as http:
        landing = http.get("/")
        assert landing.status_code == 200
        config = http.get("/config").json()
        text = str(config)
        assert "BERT sentiment" in text and "tx-broken" in text and "frobnicate" in text
        assert http.get("/sentiment").status_code == 200
        assert http.get("/broken_demo").status_code == 200


def test_ping(client):
    assert client.predict("hello", api_name="/ping") == "hello"


def test_only_real_endpoints_are_public(client):
    """The API page lists what a program may call: each demo's named endpoints (`SLUG_…`) and /ping; the pages'
    own UI events (a model switch, a redraw, a session's state) stay private."""
    from txgallery.plugin import discover_demos

    slugs = tuple(f"/{entry.slug}_" for entry in discover_demos() if entry.ok)
    public = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [name for name in public if name != "/ping" and not name.startswith(slugs)] == []
    assert {"/sentiment_predict", "/attention_analyse", "/finetune_start"} <= set(public)


def test_public_endpoints_name_their_parameters_and_returns(client):
    """A program reads the API page: each parameter's name says what it is (no `param_3` from `*args`, no `value`,
    `chosen` or `steps_v`), and each return has a label (a Markdown output without one shows as `value_277`)."""
    import re

    vague_parameter = re.compile(r"param_\d+|value|chosen|.*_v|.*_value")
    public = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    vague = {name: [p["parameter_name"] for p in info["parameters"] if vague_parameter.fullmatch(p["parameter_name"])]
             for name, info in public.items()}
    unlabelled = {name: [r["label"] for r in info["returns"] if re.fullmatch(r"value_\d+", r["label"] or "")]
                  for name, info in public.items()}
    assert {name: found for name, found in vague.items() if found} == {}
    assert {name: found for name, found in unlabelled.items() if found} == {}


def test_every_public_endpoint_is_named_and_says_what_it_does(client):
    """Each public endpoint has a name (no `fn_index`-only endpoint) and a description, which Gradio takes from its
    handler's docstring: the API page and the MCP tools show it."""
    api = client.view_api(return_format="dict", print_info=False)
    assert api["unnamed_endpoints"] == {}
    assert [name for name, info in api["named_endpoints"].items() if len(info["description"].strip()) < 20] == []


def _fits(schema: dict, value) -> bool:
    """Whether a JSON value is of the JSON schema's type (and among its `enum`); schemas without a plain type (files,
    objects) fit anything."""
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind == "array":
        return isinstance(value, list) and all(_fits(schema.get("items", {}), item) for item in value)
    plain = {"string": str, "integer": int, "number": (int, float), "boolean": bool}.get(kind)
    return plain is None or (isinstance(value, plain) and (kind == "boolean" or not isinstance(value, bool)))


def test_documented_types_are_what_the_server_takes(client):
    """`view_api` tells the truth: every parameter's default and example are of its documented type (a Dropdown of
    integer layers was documented as strings, which the server refuses), and a call with the documented types
    answers: integer layer and head indices, an integer slider as an int."""
    public = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    misfits = [(name, p["parameter_name"], p["type"], value) for name, info in public.items()
               for p in info["parameters"]
               for value in ([p["parameter_default"]] if p["parameter_has_default"] else []) + [p["example_input"]]
               if value is not None and not _fits(p["type"], value)]
    assert misfits == []
    layer = next(p for p in public["/attention_views"]["parameters"] if p["parameter_name"] == "layer")
    assert layer["python_type"]["type"] == "int"
    positions = next(p for p in public["/attention_positions"]["parameters"] if p["parameter_name"] == "positions")
    assert positions["python_type"]["type"] == "int"

    session = Client(client.src, verbose=False)  # the views draw from this session's analysis
    encoder = public["/attention_analyse"]["parameters"][0]["parameter_default"]
    analysis = session.predict(encoder, "The cat sat on the mat.", "", 2, 3, [0, 1], api_name="/attention_analyse")
    assert analysis[2]["value"] == 2 and analysis[3]["value"] == 3  # the layer and head choices, as updates
    head_view, heatmap = session.predict(5, 11, [11], api_name="/attention_views")
    assert 'data-layer="5" data-heads="11"' in head_view and heatmap["type"] == "plotly"
    note, _, _ = session.predict(model=encoder, layer=1, head=0, api_name="/attention_steps")
    assert "Layer 1, head 0" in note


def test_predict_side_by_side_with_a_model_that_cannot_load(client):
    notice, badge_ok, badge_bad, label_ok, label_bad = client.predict(
        "A wonderful, warm and funny film.", api_name="/sentiment_predict")
    assert label_ok["label"] == "positive"
    confidences = {c["label"]: c["confidence"] for c in label_ok["confidences"]}
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4)
    assert "minilm-rt-sentiment" in badge_ok and "embedded" in badge_ok and "held-out accuracy" in badge_ok
    assert "nonexistent-org/nonexistent-model" in badge_bad and "not reachable" in badge_bad
    assert not label_bad  # empty: no prediction from a model that is not there
    assert notice == ""


def test_explain_returns_word_attributions(client):
    highlights_ok, highlights_bad = client.predict("The acting was wonderful.", api_name="/sentiment_explain")
    words = [item["token"] for item in highlights_ok]
    assert "wonderful" in words
    assert highlights_bad is None


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_gives_a_message(client, text):
    with pytest.raises(AppError, match="empty"):
        client.predict(text, api_name="/sentiment_predict")


def test_huge_text_is_truncated_with_visible_notice(client):
    notice, *_ = client.predict("fine " * 20_000, api_name="/sentiment_predict")
    assert "100,000 characters" in notice and "256 tokens" in notice


def test_batch_from_lines_and_csv(client, tmp_path):
    table, download, notice = client.predict("great film\nterrible film", None, api_name="/sentiment_batch")
    assert table["headers"] == ["text", "label (minilm-rt-sentiment)", "confidence (minilm-rt-sentiment)"]
    assert "nonexistent-org/nonexistent-model" in notice and "not reachable" in notice
    assert [row[1] for row in table["data"]] == ["positive", "negative"]
    assert open(download).read().startswith("text,label (minilm-rt-sentiment)")

    csv_file = tmp_path / "reviews.csv"
    csv_file.write_text("text\nloved it\nhated it\n")
    table, _, _ = client.predict("", handle_file(str(csv_file)), api_name="/sentiment_batch")
    assert [row[1] for row in table["data"]] == ["positive", "negative"]


def test_bad_uploads_give_messages_and_the_queue_keeps_serving(client, tmp_path):
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("id,body\n1,x\n")
    with pytest.raises(AppError, match="needs a column named"):
        client.predict("", handle_file(str(no_text)), api_name="/sentiment_batch")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(AppError, match="binary"):
        client.predict("", handle_file(str(binary)), api_name="/sentiment_batch")
    with pytest.raises(AppError, match="limit is 500"):
        client.predict("x\n" * 501, None, api_name="/sentiment_batch")
    # and the app still answers
    assert client.predict("still here", api_name="/ping") == "still here"


def test_upload_over_the_size_limit_is_refused(client, tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(b"text\n" + b"a fine film\n" * 250_000)  # ~3 MB > 2 MB
    with pytest.raises(Exception, match="(?i)size|large|limit|413"):
        client.predict("", handle_file(str(big)), api_name="/sentiment_batch")
    assert client.predict("ok", api_name="/ping") == "ok"


def test_single_demo_app_has_the_demo_and_the_chrome():
    from txgallery.gallery import build_single
    from txgallery.plugin import discover_demos

    entry = next(e for e in discover_demos() if e.slug == "sentiment")
    app = build_single(entry)
    api_names = {fn.api_name for fn in app.fns.values()}
    assert {"sentiment_predict", "sentiment_explain", "sentiment_batch", "ping"} <= api_names
    assert "minilm-rt-sentiment" in str(app.config)  # the model badge


def test_efficiency_lab_measures_over_http(client):
    """The baseline alone, as a program gets it (the variants are measured in tests/demos/test_efficiency.py; int8
    through the page in tests/e2e and tests/userpaths)."""
    table, chart, downloads = client.predict([], 0.5, False, api_name="/efficiency_measure")
    assert [row[0] for row in table["data"]] == ["fp32 (baseline)"]
    column = table["headers"].index("agrees with fp32")
    assert table["data"][0][column] == 1.0 and 0.7 < table["data"][0][table["headers"].index("accuracy")] <= 1.0
    assert len(downloads) == 1 and str(downloads[0]).endswith(".zip")
    # the table names the download beside it, never a directory on the server
    assert table["data"][0][table["headers"].index("download")] == Path(downloads[0]).name
    assert not any("/" in str(cell) for cell in table["data"][0])


# The sliders' own range checks answer first over HTTP (the lab's checks are tested in tests/demos/).
@pytest.mark.parametrize("args, message", [((["pruning"], 1.0, False), "greater than maximum value 0.95"),
                                           ((["pruning"], -0.2, True), "less than minimum value 0")])
def test_efficiency_lab_bad_input(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/efficiency_measure")


def test_distillation_bad_settings_over_http(client):
    with pytest.raises(AppError, match="greater than maximum value 600"):
        client.predict(2, 100_000, 2.0, 0.7, api_name="/efficiency_distil")
    assert client.predict("still up", api_name="/ping") == "still up"


def test_model_sizes_table_over_http(client):
    table = client.predict(api_name="/efficiency_sizes")
    shapes = [row[0] for row in table["data"]]
    assert shapes[0].startswith("tiny") and shapes[-1].startswith("base")
    params = [row[1] for row in table["data"]]
    assert params == sorted(params) and 100 < params[-1] < 120  # BERT-base has ~110M parameters


def test_distillation_streams_and_reports(client):
    job = client.submit(1, 20, 2.0, 0.7, api_name="/efficiency_distil")
    outputs = job.outputs()  # every streamed update, then the final one
    verdict, curves, archive = job.result()
    assert len(outputs) >= 2  # loss curves arrived while training ran
    assert "beats" in verdict or "did not help" in verdict
    assert {row[2] for row in curves["data"]} == {"with teacher", "without teacher"}
    assert str(archive).endswith(".zip")


def test_a_session_makes_block_configs_only_when_it_needs_them():
    """Gradio's own session state makes the config of every block in the app when a session starts, and each plain API
    call is a new session; the gallery's makes a block's config when the session first needs it, with the same
    result where one is read (Gradio's deep-link route reads them all)."""
    import gradio as gr
    from gradio.state_holder import SessionState

    from tests.support import free_port
    from txgallery.gallery import PageSessionState, launch, ping

    with gr.Blocks() as app:
        with gr.Tab("many"):
            for i in range(40):
                gr.Textbox(f"box {i}", label=f"box {i}")
                gr.Slider(0, 10, value=i % 10, label=f"slider {i}")
        text, shouted = gr.Textbox(label="text"), gr.Textbox(label="shouted")
        gr.Button("Shout").click(lambda value: value.upper(), text, shouted, api_name="shout")
        gr.api(ping, api_name="ping")
    launch(app, port=free_port(), block=False, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        assert client.predict("x", api_name="/ping") == "x"
        assert client.predict("abc", api_name="/shout") == "ABC"
        session = app.state_holder[client.session_hash]
        assert isinstance(session, PageSessionState)
        assert len(session.config_values) <= 4 < len(app.blocks)  # the two calls' inputs and outputs, not all 80 boxes
        assert {"ABC"} <= {c.get("props", {}).get("value") for c in session.components}
        assert list(PageSessionState(app).components) == list(SessionState(app).components)
    finally:
        app.close()


def test_gradio_keeps_a_result_file_only_as_long_as_the_limit_says(monkeypatch, tmp_path):
    """Gradio copies every file a page returns into its cache dir and, unless told, keeps it for as long as the disk
    lasts (an efficiency run offers hundreds of MB); the gallery deletes copies older than GRADIO_CACHE_AGE_S."""
    import time

    import gradio as gr

    from tests.support import free_port
    from txgallery import Demo, gallery
    from txgallery.plugin import DemoEntry

    monkeypatch.setattr(gallery, "GRADIO_CACHE_SWEEP_S", 1)
    monkeypatch.setattr(gallery, "GRADIO_CACHE_AGE_S", 2)

    def report(text: str) -> str:
        (tmp_path / "report.txt").write_text(text)
        return str(tmp_path / "report.txt")

    def build():
        with gr.Blocks() as page:
            text, saved = gr.Textbox(), gr.File()
            text.submit(report, text, saved, api_name="report")
        return page

    app = gallery.launch(gallery.build_single(DemoEntry(name="report", origin="tests", demo=Demo(
        slug="report", title="Report", description="returns a file", build=build))),
        port=free_port(), block=False, quiet=True)
    try:
        cached = Path(Client(app.local_url, verbose=False, download_files=False).predict(
            "hello", api_name="/report")["path"])
        assert cached.is_file() and cached.read_text() == "hello" and tmp_path not in cached.parents
        deadline = time.monotonic() + 60
        while cached.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cached.exists()
    finally:
        app.close()
