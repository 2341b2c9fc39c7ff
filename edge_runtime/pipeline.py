"""Capture -> SR -> output in threads joined by bounded queues.

ONNX Runtime and LiteRT release the GIL while they compute, so capture and output overlap
the model. SR may run in several workers, each with its own interpreter, taking frames in turn;
the output puts them back in order. A live camera drops its oldest waiting frame rather than build
latency; a file or the demo never drops (capture simply waits).
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.frames import Frame, compose
from edge_runtime.metrics import psnr
from edge_runtime.stats import StreamStats

_END = object()


@dataclass
class Result:
    frame: Frame  # the LR input
    sr_y: np.ndarray
    sr_bgr: np.ndarray
    scale: int


class Pipeline:
    def __init__(self, source, upscalers: list, scale: int, sinks: list, stats: StreamStats,
                 max_frames: int | None = None, seconds: float | None = None, status=sys.stderr,
                 live_psnr: bool = True):
        """`upscalers`: one per SR worker (see models.open_workers)."""
        self.source, self.upscalers, self.scale, self.sinks, self.stats = source, upscalers, scale, sinks, stats
        self.live_psnr = live_psnr
        self.max_frames, self.seconds, self.status = max_frames, seconds, status
        self.inbox: queue.Queue = queue.Queue(maxsize=2)
        self.outbox: queue.Queue = queue.Queue(maxsize=4)
        self.taking = threading.Lock()  # frames get their output order as workers take them
        self.taken = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def _put(self, q: queue.Queue, item, droppable: bool) -> None:
        """Blocks while `q` is full, unless `droppable`: then the oldest item makes room at once, so a
        live camera never waits on SR (a wait here is latency the camera's own buffers keep)."""
        while not self.stop.is_set():
            try:
                if droppable:
                    q.put_nowait(item)
                else:
                    q.put(item, timeout=0.1)
                return
            except queue.Full:
                if droppable:
                    try:
                        q.get_nowait()
                        self.stats.drop()
                    except queue.Empty:
                        pass

    def _get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def _guard(self, body):
        def run():
            try:
                body()
            except BaseException as err:  # surfaced to the caller by run()
                self.error = self.error or err
                self.stop.set()
        return run

    def _capture(self) -> None:
        count = 0
        while not self.stop.is_set() and (self.max_frames is None or count < self.max_frames):
            t0 = time.perf_counter()
            frame = self.source.read()
            if frame is None:
                break
            frame.captured = t0 if not self.source.live else time.perf_counter()
            self.stats.stage("capture", (time.perf_counter() - t0) * 1000)
            self._put(self.inbox, frame, droppable=self.source.live)
            count += 1
        self._put(self.inbox, _END, droppable=False)

    def _upscale(self, upscaler) -> None:
        while True:
            with self.taking:
                frame, order = self._get(self.inbox), self.taken
                self.taken += 1
            if frame is _END:
                self._put(self.inbox, _END, droppable=False)  # the other workers end too
                self._put(self.outbox, (order, _END, None), droppable=False)
                break
            t0 = time.perf_counter()
            sr_y = upscaler.upscale(frame.y)
            self.stats.stage("sr", (time.perf_counter() - t0) * 1000)
            self._put(self.outbox, (order, frame, sr_y), droppable=False)

    def _output(self) -> None:
        waiting, due = {}, 0
        while True:
            item = self._get(self.outbox)
            if item is _END:  # stopped
                return
            order, frame, sr_y = item
            waiting[order] = (frame, sr_y)
            while due in waiting:
                frame, sr_y = waiting.pop(due)
                due += 1
                if frame is _END:
                    return
                self._emit(frame, sr_y)

    def _emit(self, frame: Frame, sr_y: np.ndarray) -> None:
        t0 = time.perf_counter()
        result = Result(frame, sr_y, compose(sr_y, frame.chroma), self.scale)
        for sink in self.sinks:
            sink.write(result, self.stats)
        scores = None
        if self.live_psnr and frame.truth_y is not None:
            truth_y = frame.truth_y
            h, w = truth_y.shape
            bicubic = cv2.resize(frame.y, (w, h), interpolation=cv2.INTER_CUBIC)
            scores = (psnr(sr_y, truth_y, self.scale), psnr(bicubic, truth_y, self.scale))
        self.stats.stage("output", (time.perf_counter() - t0) * 1000)
        self.stats.frame_out(frame.captured, scores, frame.name)

    def run(self) -> dict:
        """Stream until the source ends, the frame/second limit, Ctrl-C or an error; returns the summary."""
        workers = [lambda u=u: self._upscale(u) for u in self.upscalers]
        threads = [threading.Thread(target=self._guard(fn), daemon=True)
                   for fn in (self._capture, *workers, self._output)]
        start = time.monotonic()
        for t in threads:
            t.start()
        interrupted = False
        try:
            last_status = 0.0
            while threads[-1].is_alive():
                threads[-1].join(timeout=0.1)
                now = time.monotonic()
                if self.seconds is not None and now - start >= self.seconds:
                    self.stop.set()
                if self.status and now - last_status >= 0.5:
                    self.status.write("\r" + self.stats.status_line() + "\033[K")
                    self.status.flush()
                    last_status = now
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
        self.stop.set()
        for t in threads:
            t.join(timeout=2.0)
        if self.status:
            self.status.write("\r" + self.stats.status_line() + "\033[K\n")
        summary = self.stats.summary()
        summary["interrupted"] = interrupted
        summary["seconds"] = round(time.monotonic() - start, 2)
        if self.error is not None:
            raise self.error
        return summary
