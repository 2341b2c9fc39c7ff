"""The stream pipeline on real models: drops only for live sources, frame order with several SR
workers, flat memory, auto selection."""
import dataclasses
import json
import time

import pytest

from edge_runtime import backends
from edge_runtime.autoselect import cache_key, choose
from edge_runtime.demo import DemoSource
from edge_runtime.models import find, open_model
from edge_runtime.pipeline import Pipeline
from edge_runtime.stats import StreamStats


def model(scale=2, precision="int8", backend="onnxruntime", family="fsrcnn-s"):
    candidates = find(family, scale, precision, backend)
    if not candidates:
        pytest.skip(f"{family} {precision} {backend} not shipped")
    return open_model(candidates[0].path, scale, threads=1)


class Recorder:
    """A sink that keeps the index of every frame it is given."""

    def __init__(self):
        self.indices = []

    def write(self, result, stats):
        self.indices.append(result.frame.index)

    def close(self, complete):
        pass


class LiveDemo(DemoSource):
    """The demo scene delivered as a camera does: as fast as it comes, never waiting for SR."""
    live = True


def test_a_file_like_source_never_drops_frames():
    stats = StreamStats(24)
    summary = Pipeline(DemoSource((96, 64), 2), [model()], 2, [], stats, max_frames=40, status=None).run()
    assert summary["frames"] == 40 and summary["dropped"] == 0


def test_several_sr_workers_deliver_every_frame_in_capture_order():
    slow, fast = model(family="fsrcnn", backend="litert"), model(backend="litert")  # they finish out of turn
    sink = Recorder()
    summary = Pipeline(DemoSource((96, 64), 2), [slow, fast, model()], 2, [sink], StreamStats(24),
                       max_frames=60, status=None).run()
    assert summary["frames"] == 60
    assert sink.indices == sorted(set(sink.indices)) and len(sink.indices) == 60


def test_a_live_source_drops_stale_frames_instead_of_building_latency():
    stats = StreamStats(24)
    source = LiveDemo((320, 240), 2)
    summary = Pipeline(source, [model()], 2, [], stats, max_frames=120, status=None, live_psnr=False).run()
    assert summary["dropped"] > 0
    assert summary["frames"] + summary["dropped"] <= 120


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_memory_stays_flat_over_thousands_of_frames():
    upscalers = [model(), model()]
    source = DemoSource((48, 32), 2)
    Pipeline(source, upscalers, 2, [], StreamStats(24), max_frames=300, status=None).run()
    before = rss_mb()
    summary = Pipeline(source, upscalers, 2, [], StreamStats(24), max_frames=3000, status=None).run()
    assert summary["frames"] == 3000
    assert rss_mb() - before < 15


def test_auto_takes_the_best_psnr_that_holds_the_target_and_caches_the_trial(tmp_path):
    candidates = find("auto", 2, None, None)
    if len(candidates) < 2:
        pytest.skip("needs several shipped x2 models")
    cache = tmp_path / "auto.json"
    chosen, fps = choose(candidates, (64, 48), 2, 1, target_fps=0.5, log=lambda m: None, cache_path=cache)
    assert chosen == candidates[0] and fps > 0.5
    assert len(json.loads(cache.read_text())) == 1  # the best one held the target: no need to try more
    fastest, _ = choose(candidates, (64, 48), 2, 1, target_fps=1e9, log=lambda m: None, cache_path=cache)
    measured = json.loads(cache.read_text())
    assert len(measured) == len(candidates)
    assert max(measured, key=measured.get).split("|")[3] == fastest.name


def test_auto_measures_again_when_the_model_bytes_or_the_runtime_options_change(tmp_path, monkeypatch):
    shipped = find("auto", 2, None, None)[0]
    copy = tmp_path / shipped.name
    copy.write_bytes(shipped.path.read_bytes())
    artifact = dataclasses.replace(shipped, path=copy)
    before = cache_key(artifact, (64, 48), 1)
    assert cache_key(artifact, (64, 48), 1) == before
    retrained = bytearray(copy.read_bytes())
    retrained[-1] ^= 1  # same name, same size, other bytes
    copy.write_bytes(bytes(retrained))
    assert cache_key(artifact, (64, 48), 1) != before
    onnx = next(a for a in find("auto", 2, None, None) if a.backend == "onnxruntime")
    default = cache_key(onnx, (64, 48), 1)
    monkeypatch.setattr(backends, "ORT_SESSION_CONFIG", {"session.x64quantprecision": "1"} if
                        not backends.ORT_SESSION_CONFIG else {})
    assert cache_key(onnx, (64, 48), 1) != default


def test_the_status_line_gives_no_verdict_before_it_has_a_rate():
    stats = StreamStats(24, total=10)
    assert stats.status_line().startswith("     - fps [measuring vs 24] |")
    now = time.perf_counter()
    stats.frame_out(now)
    assert "[measuring vs 24]" in stats.status_line()  # one frame: no rate yet
    stats.out_times.append(now + 0.01)  # a second frame out 10 ms later: 100 fps
    assert "fps [PASS vs 24]" in stats.status_line() and "frames 1/10 (10%" in stats.status_line()
