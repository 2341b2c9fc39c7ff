import cv2
import numpy as np
import pytest

from conftest import textured_image
from edge_runtime import metrics
from edge_runtime.demo import DemoSource
from edge_runtime.frames import Frame, bgr_to_ycrcb, compose
from edge_runtime.errors import SourceError
from edge_runtime.sources import ImageFolderSource, PiCamera, ShrunkSource, VideoSource, open_camera


def test_frame_y_is_the_bt601_y_the_models_were_trained_on():
    bgr = textured_image(40, 50, seed=3)
    frame = Frame.from_bgr(bgr, 0)
    assert np.abs(frame.y.astype(int) - metrics.rgb_to_y(bgr[..., ::-1])).max() <= 1
    assert np.abs(frame.to_bgr().astype(int) - bgr).max() <= 2


def test_compose_upscales_chroma_to_the_sr_size():
    frame = Frame.from_bgr(textured_image(30, 40, seed=1), 0)
    big = compose(cv2.resize(frame.y, (80, 60)), frame.chroma)
    assert big.shape == (60, 80, 3)


def test_demo_frames_move_and_carry_exact_bicubic_truth():
    demo = DemoSource((64, 48), scale=2)
    first, later = demo.read(), None
    for _ in range(20):
        later = demo.read()
    assert first.y.shape == (48, 64) and first.truth.shape == (96, 128, 3)
    assert not np.array_equal(first.y, later.y)
    lr_y = bgr_to_ycrcb(later.truth)[..., 0]
    assert metrics.psnr(cv2.resize(later.y, (128, 96), interpolation=cv2.INTER_CUBIC), lr_y, 2) > 20


def test_video_source_reads_a_real_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(textured_image(48, 64, seed=i))
    writer.release()
    source = VideoSource(str(path))
    frames = [source.read() for _ in range(6)]
    assert source.size == (64, 48) and source.frame_count == 5
    assert [f is None for f in frames] == [False] * 5 + [True]


def test_a_shrunk_source_hands_on_the_protocols_lr_frame_with_its_truth(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), textured_image(31, 44, seed=2))
    original = ImageFolderSource(str(tmp_path)).read()
    shrunk = ShrunkSource(ImageFolderSource(str(tmp_path)), 3)
    frame = shrunk.read()
    assert shrunk.size == (14, 10) and frame.name == "a.png" and shrunk.read() is None
    assert np.array_equal(frame.truth_y, original.y[:30, :42])  # modcrop to a multiple of 3
    assert np.array_equal(frame.y, metrics.imresize(original.y[:30, :42], 1 / 3))
    assert frame.chroma.shape == (10, 14, 2)


def test_unreadable_video_and_empty_folder_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot read video"):
        VideoSource(str(bad))
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(str(tmp_path))


def test_no_camera_names_what_was_tried():
    with pytest.raises(SourceError, match="no camera found.*--demo"):
        open_camera("/dev/video-none", None)


class StandInPicamera2:
    """picamera2's API as PiCamera uses it; the stream has a row stride wider than the image, like libcamera."""

    def __init__(self, width=100, height=60, stride=128):
        self.width, self.height, self.stride = width, height, stride
        self.calls = []
        rng = np.random.default_rng(0)
        self.y = rng.integers(16, 236, (height, width), dtype=np.uint8)
        self.u = rng.integers(16, 241, (height // 2, width // 2), dtype=np.uint8)
        self.v = rng.integers(16, 241, (height // 2, width // 2), dtype=np.uint8)

    def create_video_configuration(self, main, buffer_count=4):
        self.calls.append("create_video_configuration")
        assert main["format"] == "YUV420"
        return {"main": main}

    def configure(self, config):
        self.calls.append("configure")

    def stream_configuration(self, name):
        return {"size": (self.width, self.height), "stride": self.stride, "format": "YUV420"}

    def start(self):
        self.calls.append("start")

    def capture_buffer(self, name="main"):
        h, s = self.height, self.stride
        buf = np.zeros(h * s + 2 * (h // 2) * (s // 2), np.uint8)
        buf[: h * s].reshape(h, s)[:, : self.width] = self.y
        u_start, v_start = h * s, h * s + (h // 2) * (s // 2)
        buf[u_start:v_start].reshape(h // 2, s // 2)[:, : self.width // 2] = self.u
        buf[v_start:].reshape(h // 2, s // 2)[:, : self.width // 2] = self.v
        return buf

    def stop(self):
        self.calls.append("stop")

    def close(self):
        self.calls.append("close")


def test_picamera_yuv420_y_plane_goes_in_as_is_respecting_the_stride():
    camera = StandInPicamera2()
    source = PiCamera((100, 60), camera=camera)
    frame = source.read()
    assert np.array_equal(frame.y, camera.y)
    assert frame.chroma.shape == (30, 50, 2)
    assert np.array_equal(frame.chroma[..., 0], camera.v) and np.array_equal(frame.chroma[..., 1], camera.u)
    assert source.size == (100, 60)
    source.close()
    assert camera.calls == ["create_video_configuration", "configure", "start", "stop", "close"]


def test_a_camera_that_stops_delivering_fails_clearly_within_two_seconds(tmp_path):
    import time

    from edge_runtime.sources import OpenCVCamera

    path = tmp_path / "cam.avi"  # a device path OpenCV opens like a camera
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(3):
        writer.write(textured_image(24, 32, seed=i))
    writer.release()
    camera = OpenCVCamera(str(path))
    assert camera.live and camera.size == (32, 24)
    for _ in range(3):
        assert camera.read().y.shape == (24, 32)
    path.unlink()  # the device goes away
    started = time.monotonic()
    with pytest.raises(SourceError, match="stopped delivering"):
        camera.read()
    assert time.monotonic() - started < 3.0
