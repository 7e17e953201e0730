"""`txgallery serve --mcp`: every public endpoint is an MCP tool, named after its endpoint, described by its handler's
docstring, and callable through the `mcp` client library (streamable HTTP, as Gradio serves it)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest
from support import free_port

pytestmark = pytest.mark.slow  # a server process of its own

# the sentiment and ViT pages both name handlers `classify` and `explain`: the tools must still be told apart
DEMOS = ("sentiment", "vit")


@pytest.fixture(scope="module")
def mcp_gallery():
    """`txgallery serve --mcp` with two demos on a free port of 127.0.0.1; yields its URL, then stops it by its PID."""
    port = free_port()
    command = [sys.executable, "-m", "txgallery.cli", "--log-level", "warning", "serve", "--mcp", "--port", str(port)]
    server = subprocess.Popen([*command, *(arg for slug in DEMOS for arg in ("--demo", slug))],
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{url}/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def mcp_session(url: str, work):
    """Run `work(session)` in an MCP client session with the server's tools and return what it returns."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with streamable_http_client(f"{url}/gradio_api/mcp/") as (reading, writing, _):
            async with ClientSession(reading, writing) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(run())


def test_every_public_endpoint_is_a_described_tool_and_sentiment_answers(mcp_gallery):
    from gradio_client import Client

    public = Client(mcp_gallery, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]

    async def work(session):
        tools = (await session.list_tools()).tools
        answer = await session.call_tool("sentiment_predict", {"text": "A wonderful, warm and funny film."})
        return tools, answer

    tools, answer = mcp_session(mcp_gallery, work)
    names = [tool.name for tool in tools]
    assert sorted(names) == sorted(name.lstrip("/") for name in public)  # one tool per endpoint, by its name
    assert {"sentiment_predict", "sentiment_explain", "vit_classify", "vit_explain"} <= set(names)
    assert [tool.name for tool in tools if not (tool.description or "").strip()] == []
    described = {tool.name: tool.description for tool in tools}
    assert described["sentiment_predict"].startswith(public["/sentiment_predict"]["description"])
    assert not answer.isError, answer.content
    assert "'label': 'positive'" in answer.content[0].text
