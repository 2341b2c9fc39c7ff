"""Stream statistics: rolling fps, per-stage timings, latency percentiles, drops and live PSNR.

Bounded windows keep memory flat however long the stream runs.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

WINDOW = 4096  # samples kept for percentiles
ROLLING_SECONDS = 2.0
STAGES = ("capture", "sr", "output")


class StreamStats:
    def __init__(self, target_fps: float, total: int | None = None):
        """`total`: the frames the stream will have, when known (a file, --frames), for progress and time left."""
        self.target_fps, self.total = target_fps, total
        self.lock = threading.Lock()
        self.frames = 0
        self.dropped = 0
        self.first_captured: float | None = None
        self.last_out: float | None = None
        self.out_times: deque[float] = deque(maxlen=WINDOW)
        self.latency_ms: deque[float] = deque(maxlen=WINDOW)
        self.stage_ms = {stage: deque(maxlen=WINDOW) for stage in STAGES}
        self.psnr_sr: deque[float] = deque(maxlen=WINDOW)
        self.psnr_bicubic: deque[float] = deque(maxlen=WINDOW)
        self.psnr_sums = [0.0, 0.0, 0]  # SR, bicubic, count: whole-run means
        self.psnr_by_file: dict[str, tuple[float, float]] = {}  # frames read from files: one entry per file

    def stage(self, name: str, ms: float) -> None:
        with self.lock:
            self.stage_ms[name].append(ms)

    def drop(self) -> None:
        with self.lock:
            self.dropped += 1

    def frame_out(self, captured: float, psnr: tuple[float, float] | None = None, name: str | None = None) -> None:
        now = time.perf_counter()
        with self.lock:
            self.frames += 1
            self.first_captured = min(captured, self.first_captured or captured)
            self.last_out = now
            self.out_times.append(now)
            self.latency_ms.append((now - captured) * 1000)
            if psnr:
                self.psnr_sr.append(psnr[0])
                self.psnr_bicubic.append(psnr[1])
                self.psnr_sums[0] += psnr[0]
                self.psnr_sums[1] += psnr[1]
                self.psnr_sums[2] += 1
                if name:
                    self.psnr_by_file[name] = psnr

    def rolling_fps(self) -> float:
        with self.lock:
            if len(self.out_times) < 2:
                return 0.0
            recent = [t for t in self.out_times if t >= self.out_times[-1] - ROLLING_SECONDS]
            if len(recent) < 2:
                return 0.0
            return (len(recent) - 1) / (recent[-1] - recent[0])

    def mean_fps(self) -> float:
        """Frames out per second from the first capture to the last output: a short run's queue filling
        and draining cannot inflate it."""
        with self.lock:
            if not self.frames or self.last_out == self.first_captured:
                return 0.0
            return self.frames / (self.last_out - self.first_captured)

    def verdict(self, fps: float) -> str:
        return "PASS" if fps >= self.target_fps else "FAIL"

    def status_line(self) -> str:
        fps = self.rolling_fps()
        with self.lock:
            stages = " ".join(f"{s} {np.mean(list(v)[-30:]):.1f}ms" if v else f"{s} -" for s, v in self.stage_ms.items())
            psnr = f" | PSNR {self.psnr_sr[-1]:.2f} dB (bicubic {self.psnr_bicubic[-1]:.2f})" if self.psnr_sr else ""
            frames, dropped = self.frames, self.dropped
        rate = f"{fps:6.1f} fps [{self.verdict(fps)}" if fps else f"{'-':>6} fps [measuring"  # no verdict before a rate
        return (f"{rate} vs {self.target_fps:g}] | {stages} | "
                f"frames {self._progress(frames, fps)} dropped {dropped}{psnr}")

    def _progress(self, frames: int, fps: float) -> str:
        """`120`, or with a known total `120/900 (13%, 0:32 left)`."""
        if not self.total or frames > self.total:
            return str(frames)
        seconds = int((self.total - frames) / fps) if fps and frames < self.total else None
        left = f", {seconds // 60}:{seconds % 60:02d} left" if seconds is not None else ""
        return f"{frames}/{self.total} ({100 * frames // self.total}%{left})"

    def summary(self) -> dict:
        fps = self.mean_fps()

        def pct(values) -> dict:
            arr = np.array(values, dtype=np.float64)
            if arr.size == 0:
                return {}
            return {"mean": round(float(arr.mean()), 2), "p50": round(float(np.percentile(arr, 50)), 2),
                    "p90": round(float(np.percentile(arr, 90)), 2), "p99": round(float(np.percentile(arr, 99)), 2)}

        with self.lock:
            n = self.psnr_sums[2]
            report = {
                "frames": self.frames,
                "dropped": self.dropped,
                "fps": round(fps, 2),
                "target_fps": self.target_fps,
                "verdict": self.verdict(fps),
                "latency_ms": pct(self.latency_ms),
                "stage_ms": {s: pct(v) for s, v in self.stage_ms.items()},
            }
            if n:
                report["psnr"] = {"sr": round(self.psnr_sums[0] / n, 3), "bicubic_opencv": round(self.psnr_sums[1] / n, 3),
                                  "frames": n}
                if self.psnr_by_file:
                    report["psnr"]["files"] = {name: {"sr": round(sr, 3), "bicubic_opencv": round(bicubic, 3)}
                                               for name, (sr, bicubic) in self.psnr_by_file.items()}
        return report
