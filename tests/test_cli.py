"""The `edge-sr` command, run for real as a subprocess on shipped models."""
import json
import socket
import subprocess

import cv2
import pytest

from conftest import PYTHON, ROOT, textured_image
from edge_runtime.errors import SinkError
from edge_runtime.models import shipped
from edge_runtime.sinks import VideoFileSink

EDGE_SR = [PYTHON, "-m", "edge_runtime"]
SMALL = ["--size", "96x64", "--threads", "1", "--quiet"]


def edge_sr(*args, timeout=120):
    return subprocess.run([*EDGE_SR, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def artifact(name):
    matches = [a for a in shipped() if a.name == name]
    if not matches:
        pytest.skip(f"{name} is not shipped")
    return matches[0]


def test_demo_stream_writes_a_report_with_fps_and_psnr_above_bicubic(tmp_path):
    report = tmp_path / "report.json"
    run = edge_sr("--demo", "--frames", "12", "--model", "fsrcnn-s", "--precision", "int8", "--backend", "onnxruntime",
                  "--report", str(report), *SMALL)
    assert run.returncode == 0, run.stderr
    data = json.loads(report.read_text())
    assert data["frames"] == 12 and data["dropped"] == 0
    assert data["fps"] > 0 and data["verdict"] in ("PASS", "FAIL")
    assert data["model"] == "fsrcnn-s_x2_int8.onnx"
    assert data["psnr"]["sr"] > data["psnr"]["bicubic_opencv"]
    assert set(data["latency_ms"]) == {"mean", "p50", "p90", "p99"}


def write_video(path, frames: int, size=(72, 40)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, size)
    for i in range(frames):
        writer.write(textured_image(size[1], size[0], seed=i))
    writer.release()


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_video_in_video_out_has_every_frame_at_scale_times_the_size(tmp_path, backend):
    src, out = tmp_path / "in.avi", tmp_path / "out.avi"
    write_video(src, frames=9)
    run = edge_sr("--video", str(src), "--output", str(out), "--model", "fsrcnn-s", "--backend", backend,
                  "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 9 and frames[0].shape == (80, 144, 3)
    assert not list(tmp_path.glob(".*partial*"))


def test_image_folder_stream(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), textured_image(30 + i, 41, seed=i))
    run = edge_sr("--images", str(tmp_path), "--model", "fsrcnn-s", "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("3 frames")


def test_the_status_line_counts_down_a_source_of_known_length(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), textured_image(30, 41, seed=i))
    run = edge_sr("--images", str(tmp_path), "--model", "fsrcnn-s", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert "frames 4/4 (100%" in run.stderr
    run = edge_sr("--demo", "--frames", "3", "--model", "fsrcnn-s", "--size", "96x64", "--threads", "1")
    assert run.returncode == 0 and "frames 3/3 (100%" in run.stderr, run.stderr


def test_images_of_different_sizes_go_into_a_video_only_at_one_size(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate([(30, 41), (26, 50), (30, 41)]):
        cv2.imwrite(str(photos / f"{i}.png"), textured_image(h, w, seed=i))
    out = tmp_path / "out.avi"
    run = edge_sr("--images", str(photos), "--model", "fsrcnn-s", "--backend", "onnxruntime", "--output", str(out),
                  "--threads", "1", "--quiet")
    assert run.returncode == 2 and "images of different sizes: give them one with --size WxH, or write images" in run.stderr
    assert "Traceback" not in run.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
    run = edge_sr("--images", str(photos), "--model", "fsrcnn-s", "--backend", "onnxruntime", "--output", str(out),
                  "--size", "40x30", "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    capture, frames = cv2.VideoCapture(str(out)), 0
    while capture.read()[0]:
        frames += 1
    assert frames == 3


def test_images_into_a_folder_keep_their_names_formats_and_own_sizes(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"a.png": (30, 41), "b.jpg": (26, 50), "c.bmp": (17, 23), "d.webp": (19, 22)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        cv2.imwrite(str(photos / name), textured_image(h, w, seed=i))
    run = edge_sr("--images", str(photos), "--scale", "3", "--model", "fsrcnn-s", "--backend", "onnxruntime",
                  "--output", str(tmp_path / "x3") + "/", "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "x3").iterdir()) == sorted(sizes)  # no temp files left
    for name, (h, w) in sizes.items():
        upscaled = cv2.imread(str(tmp_path / "x3" / name), cv2.IMREAD_UNCHANGED)
        assert upscaled.shape == (3 * h, 3 * w, 3)
    assert (tmp_path / "x3" / "b.jpg").read_bytes()[:2] == b"\xff\xd8"  # still a JPEG


def test_an_unreadable_image_in_a_folder_is_skipped_and_named(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), textured_image(20, 20, seed=0))
    (photos / "b.png").write_text("not an image")
    cv2.imwrite(str(photos / "c.png"), textured_image(20, 20, seed=1))
    report = tmp_path / "report.json"
    run = edge_sr("--images", str(photos), "--model", "fsrcnn-s", "--output", str(tmp_path / "x2") + "/",
                  "--threads", "1", "--quiet", "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == "edge-sr: skipped 1 file(s) OpenCV cannot read: b.png"
    assert sorted(p.name for p in (tmp_path / "x2").iterdir()) == ["a.png", "c.png"]
    assert json.loads(report.read_text())["skipped"] == ["b.png"]


def test_one_image_in_gives_one_image_out_at_scale_times_its_size(tmp_path):
    cv2.imwrite(str(tmp_path / "photo.jpg"), textured_image(21, 34, seed=0))
    run = edge_sr("--images", str(tmp_path / "photo.jpg"), "--scale", "3", "--model", "fsrcnn-s",
                  "--output", str(tmp_path / "photo_x3.png"), "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("1 frame in ") and "fps" not in run.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo_x3.png"]  # no temp file left
    assert cv2.imread(str(tmp_path / "photo_x3.png")).shape == (63, 102, 3)
    run = edge_sr("--demo", "--frames", "1", "--model", "fsrcnn-s", "--output", str(tmp_path / "shot.bmp"), *SMALL)
    assert run.returncode == 0, run.stderr
    assert cv2.imread(str(tmp_path / "shot.bmp")).shape == (128, 192, 3)


@pytest.mark.parametrize("source", [["--images", "{photos}"], ["--demo"]], ids=["two-images", "demo"])
def test_a_one_image_output_for_more_frames_is_refused_before_the_stream(source, tmp_path):
    (tmp_path / "photos").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "photos" / f"{i}.png"), textured_image(20, 20, seed=i))
    source = [a.replace("{photos}", str(tmp_path / "photos")) for a in source]
    run = edge_sr(*source, "--model", "fsrcnn-s", "--output", str(tmp_path / "out.png"), "--threads", "1")
    assert run.returncode == 2 and "holds one image" in run.stderr and "--frames 1" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.png").exists()


def test_stream_frames_into_a_folder_are_numbered_pngs(tmp_path):
    run = edge_sr("--demo", "--frames", "3", "--model", "fsrcnn-s", "--backend", "onnxruntime",
                  "--output", str(tmp_path / "frames") + "/", *SMALL)
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert cv2.imread(str(tmp_path / "frames" / names[0])).shape == (128, 192, 3)  # 96x64 at x2


def test_the_output_is_never_written_over_the_input(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), textured_image(20, 20, seed=0))
    write_video(tmp_path / "clip.avi", frames=2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for source, given, output in [("--images", tmp_path, tmp_path), ("--images", tmp_path, f"{tmp_path}/"),
                                  ("--video", tmp_path / "clip.avi", tmp_path / "sub" / ".." / "clip.avi")]:
        run = edge_sr(source, str(given), "--model", "fsrcnn-s", "--output", str(output), "--threads", "1")
        assert run.returncode == 2 and "is the input" in run.stderr and "Traceback" not in run.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("model, scale, precision, backend", [("fsrcnn-s", 3, "int8", "litert"),
                                                               ("fsrcnn", 2, "fp32", "onnxruntime")])
def test_psnr_on_a_folder_of_set5_reproduces_the_model_cards_figure(tmp_path, data_dir, model, scale, precision, backend):
    """The stream's path (BGR frames, Y through the artifact, uint8 output) scores what the evaluation did."""
    report = tmp_path / "report.json"
    run = edge_sr("--images", str(data_dir / "Set5"), "--psnr", "--scale", str(scale), "--model", model,
                  "--precision", precision, "--backend", backend, "--threads", "1", "--quiet", "--report", str(report))
    assert run.returncode == 0, run.stderr
    scored = json.loads(report.read_text())
    card_psnr = artifact(f"{model}_x{scale}_{precision}.{'tflite' if backend == 'litert' else 'onnx'}").set5_psnr()
    assert scored["psnr"]["frames"] == 5 and abs(scored["psnr"]["sr"] - card_psnr) < 0.05
    per_image = scored["psnr"]["files"]
    assert sorted(per_image) == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    assert all(v["sr"] > v["bicubic_opencv"] for v in per_image.values())


def test_psnr_scores_a_real_video_above_bicubic_and_the_demo_needs_no_flag(tmp_path):
    write_video(tmp_path / "clip.avi", frames=4, size=(96, 64))
    report = tmp_path / "report.json"
    run = edge_sr("--video", str(tmp_path / "clip.avi"), "--psnr", "--model", "fsrcnn-s", "--threads", "1", "--quiet",
                  "--report", str(report))
    assert run.returncode == 0, run.stderr
    scored = json.loads(report.read_text())
    assert scored["size"] == [48, 32] and scored["psnr"]["frames"] == 4
    assert scored["psnr"]["sr"] > scored["psnr"]["bicubic_opencv"]
    run = edge_sr("--demo", "--psnr", *SMALL)
    assert run.returncode == 2 and "drop --psnr" in run.stderr and "Traceback" not in run.stderr


def test_models_lists_every_shipped_artifact_with_its_cards_psnr():
    listed = [json.loads(line) for line in edge_sr("models", "--json").stdout.splitlines()]
    assert sorted(row["artifact"] for row in listed) == sorted(a.name for a in shipped()) and len(listed) == 24
    results = json.loads((ROOT / "results" / "quantize.json").read_text())
    for row in listed:
        form = f"{'onnx' if row['backend'] == 'onnxruntime' else 'tflite'} {row['precision']}"
        scored = results[f"{row['family']}_x{row['scale']}"][form]["quality"]
        assert (row["Set5"], row["Set14"]) == (scored["Set5"]["psnr"], scored["Set14"]["psnr"])
    table = edge_sr("models").stdout.splitlines()
    assert table[0].split()[:3] == ["artifact", "precision", "backend"] and len(table) == 25


def test_a_reader_that_leaves_early_gets_no_traceback():
    process = subprocess.Popen([*EDGE_SR, "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.close()  # before edge-sr has written anything: as `edge-sr models | head -0`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1 and stderr == ""


def test_auto_picks_a_shipped_model_and_says_which():
    run = edge_sr("--demo", "--frames", "3", "--model", "auto", "--size", "64x48", "--threads", "1",
                  "--target-fps", "1")
    assert run.returncode == 0, run.stderr
    assert "auto: chose fsrcnn" in run.stderr and "none holds" not in run.stderr


def test_auto_says_when_no_model_holds_the_target_and_takes_the_fastest():
    run = edge_sr("--demo", "--frames", "3", "--model", "auto", "--size", "64x48", "--threads", "1",
                  "--target-fps", "100000")
    assert run.returncode == 0, run.stderr
    assert "none holds 100000 fps at 64x48 here, so the fastest" in run.stderr


def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.parametrize("args, message", [
    (["--video", "/nonexistent.mp4"], "video not found"),
    (["--demo", "--model", "/nonexistent.onnx"], "model not found"),
    (["--demo", "--model", "fsrcnn", "--backend", "tensorrt"], "invalid choice"),
    (["--demo", "--size", "640by480"], "--size must look like 640x480"),
    (["--demo", "--scale", "5"], "invalid choice"),
    (["--demo", "--target-fps", "-3"], "positive number"),
    (["--camera", "/dev/video-none"], "no camera found"),
    (["--camera", "63"], "no camera found"),  # OpenCV's own warnings about the index held back
    (["--demo", "--video", "x.mp4"], "exactly one source"),
    (["--images", "pyproject.toml"], "not an image: pyproject.toml"),
    (["--demo", "--output", "/nonexistent-dir/out.mp4"], "output folder does not exist"),  # before auto's measuring
    ([], "exactly one source"),
    (["--demo", "--serve", "0.0.0.0:8080"], "needs --token"),
    (["--demo", "--model", "edge_runtime/models/fsrcnn-s_x2_fp32.onnx", "--precision", "int8"],
     "fsrcnn-s_x2_fp32.onnx runs as it is (drop --precision)"),
    (["--demo", "--model", "edge_runtime/models/fsrcnn-s_x2_fp32.onnx", "--backend", "litert"],
     "runs on onnxruntime, not litert (drop --backend, or give a .tflite file)"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, message):
    run = edge_sr(*args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_unreadable_video_and_corrupt_model_and_scale_mismatch(tmp_path):
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"\x00" * 100)
    bad_model = tmp_path / "broken.onnx"
    bad_model.write_bytes(b"garbage")
    x3 = artifact("fsrcnn-s_x3_int8.onnx").path
    for args, message in (
        (["--video", str(bad_video)], "cannot read video"),
        (["--demo", "--model", str(bad_model)], "not a usable ONNX model"),
        (["--demo", "--model", str(x3), "--scale", "2"], "upscales x3, not the x2 asked for"),
    ):
        run = edge_sr(*args, *SMALL)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1  # no FFmpeg lines


@pytest.mark.parametrize("args", [["--demo", "--frames", "500", "--report", "{blocked}/report.json"],
                                  ["bench", "--seconds", "0.2", "--out", "{blocked}"]], ids=["report", "bench"])
def test_an_unwritable_report_folder_is_refused_before_the_stream(args, tmp_path):
    (tmp_path / "file").write_text("a file, so no folder can be made under it")
    args = [a.replace("{blocked}", str(tmp_path / "file" / "out")) for a in args]
    run = edge_sr(*args, *(SMALL if args[0] == "--demo" else []))
    assert run.returncode == 2 and "cannot write to" in run.stderr and "is not a folder" in run.stderr
    assert "Traceback" not in run.stderr and "frames" not in run.stdout  # refused before streaming


def test_a_video_container_opencv_cannot_write_is_refused_before_the_stream(tmp_path):
    with pytest.raises(SinkError, match="cannot write video"):
        VideoFileSink(str(tmp_path / "out.txt"), 30.0)  # refused when made, before any frame
    assert list(tmp_path.iterdir()) == []  # no trial file left behind
    VideoFileSink(str(tmp_path / "out.mkv"), 30.0)
    assert list(tmp_path.iterdir()) == []
    run = edge_sr("--demo", "--frames", "500", "--model", "fsrcnn-s", "--backend", "onnxruntime",
                  "--output", str(tmp_path / "out.txt"), *SMALL)
    assert run.returncode == 2 and "cannot write video" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_port_in_use_is_a_clear_error():
    sock = busy_port()
    try:
        port = sock.getsockname()[1]
        run = edge_sr("--demo", "--frames", "2", "--serve", str(port), *SMALL)
    finally:
        sock.close()
    assert run.returncode == 2 and f"port {port}" in run.stderr and "in use" in run.stderr


def test_version_and_help_with_examples():
    assert edge_sr("--version").stdout.startswith("edge-sr ")
    help_text = edge_sr("--help").stdout
    assert "examples:" in help_text and "--camera" in help_text


def test_installed_console_script_runs():
    script = ROOT / ".venv" / "bin" / "edge-sr"
    if not script.exists():
        pytest.skip("not installed through make")
    run = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert run.returncode == 0


def test_sigterm_ends_the_stream_cleanly_with_its_report(tmp_path):
    import signal
    import time

    report = tmp_path / "r.json"
    proc = subprocess.Popen([*EDGE_SR, "--demo", "--seconds", "60", "--model", "fsrcnn-s", "--report", str(report), *SMALL],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # model loaded, frames flowing
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["frames"] > 0
