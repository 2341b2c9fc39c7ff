"""Where upscaled frames go: a video file (written to a temp file, renamed when complete), a folder of
images or one image (each written to a temp file, then renamed) or a window."""
from __future__ import annotations

import os
from pathlib import Path

import cv2

from edge_runtime.errors import SinkError
from edge_runtime.files import check_writable, write_atomic
from edge_runtime.metrics import IMAGE_SUFFIXES
from edge_runtime.sources import opencv_errors_only


class VideoFileSink:
    """MP4 (mp4v) or any container OpenCV writes; the final name appears only when the stream ends cleanly."""

    def __init__(self, path: str, fps: float):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise SinkError(f"output folder does not exist: {self.path.parent}")
        check_writable(self.path.parent)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps = fps
        self.fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None  # every frame's, set by the first
        # A trial open, so that a container OpenCV cannot write fails here, before the stream, not at its first frame.
        self.open((16, 16)).release()
        self.tmp.unlink(missing_ok=True)

    def open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        with opencv_errors_only():  # a refused container is our one line, not OpenCV's warnings too
            writer = cv2.VideoWriter(str(self.tmp), self.fourcc, self.fps, size)
        if not writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise SinkError(f"cannot write video {self.path} (OpenCV writes .mp4, .avi, .mkv or .mov)")
        return writer

    def write(self, result, stats) -> None:
        h, w = result.sr_bgr.shape[:2]
        if self.writer is None:
            self.writer, self.size = self.open((w, h)), (w, h)
        elif (w, h) != self.size:  # OpenCV would drop the frame without a word
            raise SinkError(f"cannot write a {w}x{h} frame into {self.path}, whose frames are {self.size[0]}x{self.size[1]} "
                            "(images of different sizes: give them one with --size WxH, or write images with --output DIR/)")
        self.writer.write(result.sr_bgr)

    def close(self, complete: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            if complete:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def write_image(path: Path, bgr) -> None:
    ok, encoded = cv2.imencode(path.suffix, bgr)
    if not ok:
        raise SinkError(f"cannot encode image {path}")
    write_atomic(path, encoded.tobytes())


def is_image(output: str) -> bool:
    """`--output` names one image when it ends in an image suffix (photo_x2.png)."""
    return Path(output).suffix.lower() in IMAGE_SUFFIXES


class ImageFileSink:
    """One image, for a source of one frame (the caller checks the count before the stream)."""

    def __init__(self, path: str):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise SinkError(f"output folder does not exist: {self.path.parent}")
        check_writable(self.path.parent)

    def write(self, result, stats) -> None:
        write_image(self.path, result.sr_bgr)

    def close(self, complete: bool = True) -> None:
        pass


def is_folder(output: str) -> bool:
    """`--output` names a folder of images when it ends in a separator or is an existing folder."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


class ImageFolderSink:
    """One image per frame: a frame read from a file keeps that file's name (and so its format), any
    other frame becomes frame_000000.png and on. Each image is complete on disk or absent."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        if not self.folder.parent.is_dir():
            raise SinkError(f"output folder does not exist: {self.folder.parent}")
        check_writable(self.folder)

    def write(self, result, stats) -> None:
        path = self.folder / (result.frame.name or f"frame_{result.frame.index:06d}.png")
        write_image(path, result.sr_bgr)  # the folder made at the first frame: a stream that fails before leaves nothing

    def close(self, complete: bool = True) -> None:
        pass


class DisplaySink:
    """An OpenCV window (needs a GUI build of OpenCV and a display)."""

    def __init__(self):
        try:
            cv2.namedWindow("edge-sr", cv2.WINDOW_NORMAL)
        except cv2.error:
            raise SinkError("--display needs OpenCV with GUI support and a display "
                            "(pip install opencv-python); use --serve to watch in a browser") from None

    def write(self, result, stats) -> None:
        frame = result.sr_bgr.copy()
        cv2.putText(frame, f"{stats.rolling_fps():.1f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 255, 0), 2)
        cv2.imshow("edge-sr", frame)
        cv2.waitKey(1)

    def close(self, complete: bool = True) -> None:
        cv2.destroyAllWindows()
