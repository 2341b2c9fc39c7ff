"""`--serve`: a live page with bicubic and SR side by side as an MJPEG stream, plus /stats.json.

Bound to 127.0.0.1 unless a host is given; with a token, every request must carry ?token=.
"""
from __future__ import annotations

import errno
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from edge_runtime.errors import SinkError

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edge-sr live</title>
<style>body{{background:#111;color:#eee;font-family:sans-serif;margin:1em}}img{{max-width:100%}}
#stats{{font-family:monospace}}</style></head>
<body><h1>edge-sr live: bicubic (left) vs FSRCNN (right)</h1>
<div id="stats">waiting for frames...</div>
<img id="stream" src="/stream.mjpg{query}" alt="live stream">
<script>
async function poll() {{
  try {{
    const r = await fetch('/stats.json{query}');
    const s = await r.json();
    document.getElementById('stats').textContent = s.status;
  }} catch (e) {{}}
  setTimeout(poll, 500);
}}
poll();
</script></body></html>
"""


def side_by_side(result, fps: float) -> np.ndarray:
    h, w = result.sr_bgr.shape[:2]
    bicubic = cv2.resize(result.frame.to_bgr(), (w, h), interpolation=cv2.INTER_CUBIC)
    both = np.hstack([bicubic, result.sr_bgr])
    for text, x in (("bicubic", 10), (f"FSRCNN x{result.scale}  {fps:.1f} fps", w + 10)):
        cv2.putText(both, text, (x, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(both, text, (x, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 0), 2, cv2.LINE_AA)
    return both


class LiveServer:
    def __init__(self, host: str, port: int, token: str | None = None):
        self.token = token
        self.condition = threading.Condition()
        self.jpeg: bytes | None = None
        self.stats = None
        self.clients = 0
        self.closed = False
        try:
            self.httpd = ThreadingHTTPServer((host, port), self._handler())
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise SinkError(f"port {port} on {host} is in use; pick another with --serve [HOST:]PORT") from None
            raise SinkError(f"cannot serve on {host}:{port} ({err.strerror})") from None
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        threading.Thread(target=self.httpd.serve_forever, name="serve", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")

    def write(self, result, stats) -> None:
        jpeg = None
        if self.clients:  # encode only while someone watches
            ok, buf = cv2.imencode(".jpg", side_by_side(result, stats.rolling_fps()), [cv2.IMWRITE_JPEG_QUALITY, 80])
            jpeg = buf.tobytes() if ok else None
        with self.condition:
            self.stats = stats
            if jpeg:
                self.jpeg = jpeg
            self.condition.notify_all()

    def close(self, complete: bool = True) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the status line clean
                pass

            def _authorized(self, query: dict) -> bool:
                if server.token is None:
                    return True
                given = query.get("token", [""])[0]
                return hmac.compare_digest(given.encode(), server.token.encode())

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if not self._authorized(query):
                    return self._send(403, b"forbidden: add ?token=...\n", "text/plain")
                suffix = f"?token={server.token}" if server.token else ""
                if url.path == "/":
                    return self._send(200, PAGE.format(query=suffix).encode(), "text/html; charset=utf-8")
                if url.path == "/stats.json":
                    stats = server.stats  # the status line is built when asked, not for every frame
                    status = stats.status_line() if stats else "waiting for frames"
                    body = json.dumps({"status": status}).encode()
                    return self._send(200, body, "application/json")
                if url.path == "/stream.mjpg":
                    return self._stream()
                return self._send(404, b"not found\n", "text/plain")

            def _stream(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with server.condition:
                    server.clients += 1
                try:
                    last = None
                    while True:
                        with server.condition:
                            server.condition.wait_for(lambda: server.closed or server.jpeg is not last, timeout=1.0)
                            if server.closed:
                                return
                            jpeg = last = server.jpeg
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.condition:
                        server.clients -= 1

        return Handler
