"""`edge-sr bench` end to end: real models, the OpenCV peer, report.json and report.html."""
import json
import subprocess

import pytest

from conftest import PYTHON, ROOT

PEERS = ROOT.parent / "shared" / "peers" / "opencv_dnn_superres"


def test_bench_measures_fps_and_psnr_and_writes_both_reports(tmp_path, data_dir):
    if not PEERS.is_dir():
        pytest.skip("OpenCV peer models not found")
    run = subprocess.run(
        [PYTHON, "-m", "edge_runtime", "bench", "--scales", "2", "--sizes", "64x48", "--threads", "1",
         "--seconds", "0.3", "--models", "fsrcnn-s_x2_int8.tflite", "--data-dir", str(data_dir), "--sets", "Set5",
         "--opencv-models", str(PEERS), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert names == ["fsrcnn-s_x2_int8.tflite", "opencv FSRCNN", "opencv FSRCNN-small"]
    ours, peer = report["results"][0], report["results"][1]
    assert ours["speed"][0]["fps"] > 0 and ours["speed"][0]["verdict"] in ("PASS", "FAIL")
    assert ours["quality"]["Set5"]["psnr"] > ours["quality"]["Set5"]["bicubic_psnr"]
    assert abs(peer["quality"]["Set5"]["psnr"] - 34.82) < 0.05  # the published figure for OpenCV FSRCNN x2
    assert report["machine"]["cpu_count"] >= 1
    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html and "24 fps" in html and "fsrcnn-s_x2_int8.tflite" in html
    assert "configurations hold 24 fps" in run.stdout


def test_bench_without_data_scores_on_the_demo_scene(tmp_path):
    run = subprocess.run(
        [PYTHON, "-m", "edge_runtime", "bench", "--scales", "2", "--sizes", "64x48", "--threads", "1",
         "--seconds", "0.2", "--models", "fsrcnn-s_x2_int8.onnx", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["quality_source"] == "demo scene" and "demo" in report["results"][0]["quality"]


def test_bench_with_no_matching_model_is_a_clear_error(tmp_path):
    run = subprocess.run([PYTHON, "-m", "edge_runtime", "bench", "--models", "nope.onnx", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "no shipped model" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("folder, message", [("missing", "--opencv-models folder not found"),
                                             ("empty", "no OpenCV dnn_superres models for x2")])
def test_bench_with_an_opencv_models_folder_without_models_is_a_clear_error(tmp_path, folder, message):
    (tmp_path / "empty").mkdir()
    run = subprocess.run([PYTHON, "-m", "edge_runtime", "bench", "--scales", "2", "--sizes", "64x48", "--threads", "1",
                          "--seconds", "0.2", "--models", "fsrcnn-s_x2_int8.onnx", "--opencv-models", str(tmp_path / folder),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()  # refused before measuring


def test_a_bad_bench_flag_points_at_bench_help(tmp_path):
    run = subprocess.run([PYTHON, "-m", "edge_runtime", "bench", "--scales", "7", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        "edge-sr: error: argument --scales: invalid choice: 7 (choose from 2, 3, 4) (see edge-sr bench --help)"]
