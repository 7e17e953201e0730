"""A short load test: 32 concurrent clients send every demo's declared traffic to the gallery; nothing may fail."""

from __future__ import annotations

import os

import pytest

from txgallery.loadgen import rss_probe, run_load, traffic_mix
from txgallery.plugin import discover_demos

pytestmark = pytest.mark.slow

CLIENTS = 32
# Demos whose every call starts an exclusive job: under load they answer "busy" or "queue full" by design (tested
# in their own suites), so they send no traffic here.
JOB_DEMOS = {"efficiency": "one lab run at a time per model", "finetune": "training jobs are capped and queued"}


def test_every_demo_declares_traffic():
    entries = [e for e in discover_demos() if e.ok]
    assert entries
    assert [e.slug for e in entries if not e.demo.traffic and e.slug not in JOB_DEMOS] == []


def test_32_concurrent_clients_get_answers_and_none_fails(gallery):
    mix = traffic_mix(discover_demos())
    report = run_load(gallery, mix, clients=CLIENTS, calls_per_client=2, memory_probe=rss_probe(os.getpid()))
    assert len(report.results) == CLIENTS * 2
    assert report.failures == [], "\n".join(f"{f.api_name}: {f.error}" for f in report.failures[:10])
    table = report.latency_table()
    assert sum(row["requests"] for row in table) == CLIENTS * 2
    assert all(row["p95_ms"] >= row["p50_ms"] > 0 for row in table)
    assert report.memory_mb and report.memory_mb[-1][1] > 0
