"""Model replicas' health checks: `ServiceHealth` on a service's own thread, and every gallery service's probe."""

from __future__ import annotations

import asyncio
import threading

import pytest

from txgallery.serving.ray_serve import EchoService, ServiceHealth
from txgallery.serving.seam import LocalBackend, ServiceKey

RELEASE = threading.Event()  # what the stuck and long-running stand-ins below wait for


class Healthy:
    def check_health(self) -> None:
        pass


class Broken:
    def check_health(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class Stuck:
    def check_health(self) -> None:
        RELEASE.wait(30)


class Busy:
    def __init__(self) -> None:
        self.probes = 0

    def long_run(self) -> str:
        RELEASE.wait(30)
        return "done"

    def check_health(self) -> None:
        self.probes += 1


class NeverLoads:
    def __init__(self) -> None:
        raise OSError("no weights at /models/missing")

    def check_health(self) -> None:
        raise AssertionError("a service that never started is not probed")


class NoProbe:
    pass


@pytest.fixture
def backend():
    RELEASE.clear()
    backend = LocalBackend()
    yield backend
    RELEASE.set()  # frees a stand-in still waiting
    backend.shutdown()


def _started(backend: LocalBackend, cls: type) -> ServiceKey:
    key = ServiceKey(cls, ())
    backend.start(key)
    return key


def test_a_service_that_answers_is_healthy(backend):
    asyncio.run(ServiceHealth(backend, _started(backend, Healthy), timeout_s=5).check())
    asyncio.run(ServiceHealth(backend, _started(backend, NoProbe), timeout_s=5).check())  # nothing to probe
    asyncio.run(ServiceHealth(backend, _started(backend, EchoService), timeout_s=5).check())


def test_a_model_that_raises_is_unhealthy_with_its_error(backend):
    with pytest.raises(RuntimeError, match="illegal memory access"):
        asyncio.run(ServiceHealth(backend, _started(backend, Broken), timeout_s=5).check())


@pytest.mark.timeout(60)
def test_a_model_that_does_not_answer_is_unhealthy_after_the_timeout(backend):
    health = ServiceHealth(backend, _started(backend, Stuck), timeout_s=0.5)
    with pytest.raises(RuntimeError, match=r"Stuck\(\): its model has not answered a small forward"):
        asyncio.run(health.check())


@pytest.mark.timeout(60)
def test_a_probe_behind_a_long_call_waits_for_it_without_failing(backend):
    key = _started(backend, Busy)
    run = backend.submit(key, "long_run")
    health = ServiceHealth(backend, key, timeout_s=0.3, busy_limit_s=60)
    asyncio.run(health.check())  # queued behind the run: busy, not stuck
    queued = health.probe
    asyncio.run(health.check())  # the same probe, still queued: no second one is stacked
    assert health.probe is queued and not queued.done()
    RELEASE.set()
    assert run.result(timeout=10) == "done"
    queued.result(timeout=10)  # the queued probe ran once the run was over
    instance = backend._instances[key]
    assert instance.probes == 1
    asyncio.run(health.check())  # and the next check probes afresh
    assert instance.probes == 2


@pytest.mark.timeout(60)
def test_a_call_past_the_longest_allowed_is_taken_as_stuck(backend):
    key = _started(backend, Busy)
    backend.submit(key, "long_run")
    health = ServiceHealth(backend, key, timeout_s=0.3, busy_limit_s=0.1)
    with pytest.raises(RuntimeError, match=r"Busy\(\): its thread has been on one call for"):
        asyncio.run(health.check())


def test_a_service_whose_model_never_loaded_stays_healthy(backend):
    """Its pages say why on every call; a new replica would not load it either, so Serve must not restart it."""
    key = ServiceKey(NeverLoads, ())
    with pytest.raises(OSError):
        backend.start(key)
    asyncio.run(ServiceHealth(backend, key, timeout_s=5).check())


@pytest.mark.slow
def test_every_gallery_service_runs_its_health_probe_on_its_default_model():
    """Each service the gallery connects to defines `check_health`, and it runs on the embedded default (a model
    replica runs exactly this, every 10 s, on Ray Serve)."""
    from txgallery import settings
    from txgallery.gallery import build_gallery
    from txgallery.plugin import discover_demos
    from txgallery.serving.seam import collecting_services

    previous = settings.current()  # another test's session may have configured models that cannot load
    settings.configure(settings.Settings())
    try:
        with collecting_services() as keys:
            build_gallery(discover_demos())
    finally:
        settings.configure(previous)
    assert len({key.cls for key in keys}) >= 8, keys
    backend = LocalBackend()
    try:
        for key in keys:
            assert callable(getattr(key.cls, "check_health", None)), f"{key.name} has no health probe"
            backend.start(key)
            asyncio.run(ServiceHealth(backend, key).check())
    finally:
        backend.shutdown()
