"""The simulated-GPU service of the capacity bench (bench/plugins/txgallery_simulated) and how a model replica batches.

`SimulatedDevice` holds its device for a fixed time per batch while sleeping: the GIL stays free, so two devices overlap.
`CallBatcher` (a model replica's batching) joins every call that waited while a batch ran into the next batch. All in
this process (bench/bench_capacity.py serves the plugin on a two-node Ray). No timing thresholds: the device times
the assertions use are those the service is given.
"""

from __future__ import annotations

import asyncio
import threading
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "bench" / "plugins"


@pytest.fixture
def simulated(monkeypatch):
    """The plugin's package importable for this test only (its entry point is found only while it is on the path)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    from txgallery_simulated import device

    return device


def test_the_simulated_demo_is_a_plugin_found_only_on_its_path(simulated, monkeypatch):
    from txgallery.plugin import ENTRY_POINT_GROUP, discover_demos

    (entry,) = discover_demos(only=["simulated"])
    assert entry.ok and entry.demo.traffic[0].api_name == "simulated_predict"
    monkeypatch.undo()
    assert "simulated" not in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}  # not in the gallery


def test_two_devices_hold_at_the_same_time_without_the_gil(simulated):
    devices = [simulated.SimulatedDevice(base_ms=1000, per_item_ms=0) for _ in range(2)]
    ready = threading.Barrier(2)

    def use(device) -> None:
        ready.wait()
        device.predict(["a"])

    threads = [threading.Thread(target=use, args=(device,)) for device in devices]
    cpu = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu
    (first_start, first_end, _), (second_start, second_end, _) = (d.device_holds()[0] for d in devices)
    assert first_start < second_end and second_start < first_end  # the holds overlap: neither waited on the GIL
    assert cpu < devices[0].device_seconds(1)  # sleeping: far less CPU than the time held


def _run_on(device, loop):
    async def run(calls: list[list]) -> list:
        out = await loop.run_in_executor(None, device.predict, [x for call in calls for x in call])
        start, results = 0, []
        for call in calls:
            results.append(out[start:start + len(call)])
            start += len(call)
        return results

    return run


def test_calls_that_wait_while_a_batch_runs_form_the_next_batch(simulated):
    from txgallery.serving.ray_serve import CallBatcher

    device = simulated.SimulatedDevice(base_ms=300, per_item_ms=0)

    async def scenario() -> list:
        batcher = CallBatcher(_run_on(device, asyncio.get_running_loop()), max_batch_size=16, wait_s=0.01)
        first = asyncio.ensure_future(batcher(["first"]))
        while not device.device.locked():  # the first batch holds the device
            await asyncio.sleep(0.005)
        later = [asyncio.ensure_future(batcher([f"text {i}"])) for i in range(8)]
        return [await first, *await asyncio.gather(*later)]

    answers = asyncio.run(scenario())
    assert [size for _, _, size in device.device_holds()] == [1, 8]
    assert answers == [["first · batch of 1"], *([f"text {i} · batch of 8"] for i in range(8))]
