"""--serve: a real HTTP server over loopback, and the page in real headless Chromium."""
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from conftest import PYTHON, ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=2)
        except urllib.error.HTTPError:
            raise
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture
def live_stream():
    port = free_port()
    token = "s3cret"
    proc = subprocess.Popen(
        [PYTHON, "-m", "edge_runtime", "--demo", "--size", "96x64", "--model", "fsrcnn-s", "--precision", "int8",
         "--backend", "onnxruntime", "--threads", "1", "--seconds", "40", "--serve", f"127.0.0.1:{port}",
         "--token", token, "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(f"http://127.0.0.1:{port}/stats.json?token={token}")
        yield port, token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read_first_jpeg(stream) -> np.ndarray:
    buf = b""
    while b"\xff\xd9" not in buf or b"\xff\xd8" not in buf:
        chunk = stream.read(4096)
        assert chunk, "stream ended before a frame"
        buf += chunk
    start = buf.index(b"\xff\xd8")
    end = buf.index(b"\xff\xd9", start) + 2
    return cv2.imdecode(np.frombuffer(buf[start:end], np.uint8), cv2.IMREAD_COLOR)


def test_mjpeg_stream_shows_bicubic_and_sr_side_by_side(live_stream):
    port, token = live_stream
    page = wait_for(f"http://127.0.0.1:{port}/?token={token}").read().decode()
    assert "/stream.mjpg" in page
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg?token={token}", timeout=20) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        frame = read_first_jpeg(stream)
    assert frame.shape == (128, 2 * 192, 3)
    status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json?token={token}").read())
    assert "fps" in status["status"]


def test_requests_without_the_token_are_refused(live_stream):
    port, _ = live_stream
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=5)
    assert err.value.code == 403


def test_live_page_renders_frames_in_headless_chromium(live_stream, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed (CI installs it)")
    port, token = live_stream
    shot = tmp_path / "page.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000", "--window-size=900,500",
         f"--screenshot={shot}", f"http://127.0.0.1:{port}/?token={token}"],
        capture_output=True, timeout=90)
    image = cv2.imread(str(shot))
    assert image is not None, "chromium wrote no screenshot"
    # The dark page background is #111; the stream adds a bright, textured region.
    assert (image.mean(axis=2) > 60).mean() > 0.05
