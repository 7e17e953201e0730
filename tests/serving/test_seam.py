"""The serving seam in one process: calls run on the service's own thread; generator methods stream and stop."""

from __future__ import annotations

import threading

import pytest

from txgallery.serving.seam import (
    LocalBackend,
    connect,
    get_backend,
    is_streaming,
    set_backend,
)


class Counter:
    """A toy service that records what it produced and on which thread."""

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.produced: list[int] = []
        self.threads: set[str] = set()

    def add(self, x: int) -> int:
        self.threads.add(threading.current_thread().name)
        return self.start + x

    def count(self, n: int):
        for i in range(n):
            self.threads.add(threading.current_thread().name)
            self.produced.append(i)
            yield self.start + i

    def fail_after_one(self):
        yield 1
        raise ValueError("broken on purpose")

    def report(self) -> tuple[list[int], set[str]]:
        return list(self.produced), set(self.threads)


@pytest.fixture()
def backend():
    previous, fresh = get_backend(), LocalBackend()
    set_backend(fresh)
    yield fresh
    fresh.shutdown()
    set_backend(previous)


def test_plain_calls_run_on_one_service_thread_per_instance(backend):
    service = connect(Counter, 10)
    assert [service.add(i) for i in range(3)] == [10, 11, 12]
    _, threads = service.report()
    assert len(threads) == 1 and threads.pop() != threading.current_thread().name
    assert connect(Counter, 20).add(1) == 21  # other arguments, other instance


def test_generator_methods_stream_in_order(backend):
    assert is_streaming(Counter, "count") and not is_streaming(Counter, "add")
    assert list(connect(Counter, 5).count(4)) == [5, 6, 7, 8]


def test_closing_the_stream_stops_the_generator_on_the_service_thread(backend):
    service = connect(Counter)
    stream = service.count(10_000)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    produced, _ = service.report()  # queued behind the stopped generator: it returns only once that one has ended
    assert len(produced) < 10, "the generator kept running after the caller stopped reading"
    assert service.add(1) == 1  # and the service thread is free for the next call


def test_errors_inside_a_stream_reach_the_caller(backend):
    stream = connect(Counter).fail_after_one()
    assert next(stream) == 1
    with pytest.raises(ValueError, match="broken on purpose"):
        next(stream)


def test_an_abandoned_stream_does_not_block_the_service(backend):
    service = connect(Counter)
    stream = service.count(10_000)
    next(stream)
    del stream  # e.g. a Gradio event cancelled by a Stop button: the iterator is dropped, not closed explicitly
    assert service.add(2) == 2
    assert len(service.report()[0]) < 10


def test_configs_that_name_the_former_ray_import_path_still_load():
    """Operators' serve configs written before the move name `txgallery.ray_serve:build_app`."""
    import importlib

    former, current = importlib.import_module("txgallery.ray_serve"), importlib.import_module("txgallery.serving.ray_serve")
    assert former.build_app is current.build_app and former.GalleryArgs is current.GalleryArgs
