"""Frame sources: video files, image folders, V4L2/USB cameras (OpenCV) and the Pi camera (picamera2).

Each has `read() -> Frame | None` (None: the source has ended), `close()`, `size` (w, h of its
frames), `fps`, `live` (a live source may have frames dropped to keep latency low; a file never
does), `name` and `frame_count` (how many frames it holds: known for files, None for a camera).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.errors import SourceError
from edge_runtime.frames import Frame
from edge_runtime.metrics import IMAGE_SUFFIXES, image_files, imresize, modcrop

CAMERA_RECONNECT_SECONDS = 2.0


@contextmanager
def opencv_errors_only():
    """OpenCV's warnings held back (a camera index that is not there, a container it cannot write): the caller
    says what failed in one line of its own."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(2)
    try:
        yield
    finally:
        cv2.setLogLevel(level)


def _resize_to(bgr: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size and (bgr.shape[1], bgr.shape[0]) != size:
        return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return bgr


class VideoSource:
    live = False

    def __init__(self, path: str, size: tuple[int, int] | None = None):
        self.name = f"video:{path}"
        if not Path(path).is_file():
            raise SourceError(f"video not found: {path}")
        self.capture = cv2.VideoCapture(str(path))
        ok, first = self.capture.read() if self.capture.isOpened() else (False, None)
        if not ok:
            self.capture.release()
            raise SourceError(f"cannot read video {path} (not a video OpenCV can decode)")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = max(0, int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))) or None  # the container's hint; -1: none
        self.resize = size
        self.size = size or (first.shape[1], first.shape[0])
        self.pending, self.index = first, 0

    def read(self) -> Frame | None:
        if self.pending is not None:
            bgr, self.pending = self.pending, None
        else:
            ok, bgr = self.capture.read()
            if not ok:
                return None
        frame = Frame.from_bgr(_resize_to(bgr, self.resize), self.index)
        self.index += 1
        return frame

    def close(self) -> None:
        self.capture.release()


class ImageFolderSource:
    """The images of a folder in name order, or one image file; a file OpenCV cannot read is skipped and
    listed in `skipped`."""

    live = False

    def __init__(self, folder: str, size: tuple[int, int] | None = None):
        self.name = f"images:{folder}"
        if Path(folder).is_file():
            if Path(folder).suffix.lower() not in IMAGE_SUFFIXES:
                raise SourceError(f"not an image: {folder} (images are {', '.join(IMAGE_SUFFIXES)})")
            self.files = [Path(folder)]
        else:
            try:
                self.files = image_files(folder)
            except FileNotFoundError as err:
                raise SourceError(str(err)) from None
        self.resize, self.index, self.fps = size, 0, 30.0
        self.frame_count = len(self.files)
        self.skipped: list[str] = []
        first = cv2.imread(str(self.files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise SourceError(f"cannot read image {self.files[0]}")
        self.size = size or (first.shape[1], first.shape[0])

    def read(self) -> Frame | None:
        while self.index < len(self.files):
            path = self.files[self.index]
            self.index += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                return Frame.from_bgr(_resize_to(bgr, self.resize), self.index - 1, name=path.name)
            self.skipped.append(path.name)
        return None

    def close(self) -> None:
        pass


class OpenCVCamera:
    """A V4L2/USB camera by index or device path. Reconnects if it stops delivering, else gives up
    within CAMERA_RECONNECT_SECONDS with a clear error."""

    live = True
    frame_count = None

    def __init__(self, device: int | str = 0, size: tuple[int, int] | None = None):
        self.device, self.resize, self.index = device, size, 0
        self.name = f"camera:{device}"
        self.capture = self._open()
        if self.capture is None:
            raise SourceError(f"no camera at {device}")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.size = size or (int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _open(self):
        with opencv_errors_only():
            capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2) if isinstance(self.device, int) else cv2.VideoCapture(self.device)
        if not capture.isOpened():
            capture.release()
            return None
        if self.resize:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.resize[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resize[1])
        return capture

    def read(self) -> Frame:
        ok, bgr = self.capture.read()
        deadline = time.monotonic() + CAMERA_RECONNECT_SECONDS
        while not ok:
            if time.monotonic() > deadline:
                raise SourceError(f"camera {self.device} stopped delivering frames and did not come back")
            self.capture.release()
            time.sleep(0.2)
            self.capture = self._open() or self.capture
            ok, bgr = self.capture.read()
        frame = Frame.from_bgr(_resize_to(bgr, self.resize), self.index)
        self.index += 1
        return frame

    def close(self) -> None:
        self.capture.release()


class PiCamera:
    """picamera2 with a YUV420 video stream: the Y plane goes into the net as is (no colour
    conversion); the quarter-size U/V planes become the chroma. Rows are `stride` bytes apart."""

    live = True
    name = "picamera2"
    frame_count = None

    def __init__(self, size: tuple[int, int] = (640, 480), camera=None):
        if camera is None:
            from picamera2 import Picamera2  # only on a Pi; imported here so the runtime stays portable

            camera = Picamera2()
        self.camera = camera
        config = camera.create_video_configuration(main={"size": size, "format": "YUV420"}, buffer_count=4)
        camera.configure(config)
        stream = camera.stream_configuration("main")
        self.width, self.height = self.size = tuple(stream["size"])
        self.stride = stream["stride"]
        self.fps = 30.0
        camera.start()
        self.index = 0

    def planes(self, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Y h x w, chroma h/2 x w/2 x 2 as (Cr, Cb)) views of one YUV420 buffer."""
        w, h, stride = self.width, self.height, self.stride
        flat = np.asarray(buffer, dtype=np.uint8).reshape(-1)
        y = flat[: h * stride].reshape(h, stride)[:, :w]
        half = stride // 2
        chroma_len = (h // 2) * half
        u = flat[h * stride : h * stride + chroma_len].reshape(h // 2, half)[:, : w // 2]
        v = flat[h * stride + chroma_len : h * stride + 2 * chroma_len].reshape(h // 2, half)[:, : w // 2]
        return y, np.dstack([v, u])

    def read(self) -> Frame:
        started = time.monotonic()
        while True:
            try:
                buffer = self.camera.capture_buffer("main")
                break
            except Exception as err:  # libcamera reports a lost camera as runtime errors
                if time.monotonic() - started > CAMERA_RECONNECT_SECONDS:
                    raise SourceError(f"Pi camera stopped delivering frames ({err})") from None
                time.sleep(0.1)
        y, chroma = self.planes(buffer)
        frame = Frame(y=np.ascontiguousarray(y), chroma=np.ascontiguousarray(chroma), index=self.index)
        self.index += 1
        return frame

    def close(self) -> None:
        self.camera.stop()
        self.camera.close()


class ShrunkSource:
    """Another source's frames taken as the truth: each is shrunk by `scale` as the evaluation protocol
    shrinks a test image (modcrop, MATLAB bicubic on Y; chroma by area) and handed on with that truth, so
    the stream scores PSNR on real content, a camera's included. The shrinking runs in the capture thread."""

    def __init__(self, source, scale: int):
        self.source, self.scale = source, scale
        self.size = (source.size[0] // scale, source.size[1] // scale)
        self.name = f"{source.name} shrunk x{scale}"
        self.fps, self.live, self.frame_count = source.fps, source.live, source.frame_count
        self.skipped = getattr(source, "skipped", [])

    def read(self) -> Frame | None:
        frame = self.source.read()
        if frame is None:
            return None
        truth_y = modcrop(frame.y, self.scale)
        lr_y = imresize(truth_y, 1.0 / self.scale)
        chroma = None if frame.chroma is None else cv2.resize(frame.chroma, lr_y.shape[::-1], interpolation=cv2.INTER_AREA)
        return Frame(y=lr_y, chroma=chroma, index=frame.index, truth_y=truth_y, name=frame.name)

    def close(self) -> None:
        self.source.close()


def open_camera(device: str | None, size: tuple[int, int] | None):
    """picamera2 when importable (and no device named), else OpenCV; one clear error when neither works."""
    tried = []
    if device is None:
        try:
            import picamera2  # noqa: F401
        except ImportError:
            tried.append("picamera2 (not installed)")
        else:
            try:
                return PiCamera(size or (640, 480))
            except Exception as err:
                tried.append(f"picamera2 ({str(err).splitlines()[0][:80]})")
    target: int | str = int(device) if device is not None and device.isdigit() else (device or 0)
    try:
        return OpenCVCamera(target, size)
    except SourceError:
        tried.append(f"V4L2/USB camera {target}")
    raise SourceError(f"no camera found (tried {', '.join(tried)}); use --video FILE or --demo instead")
