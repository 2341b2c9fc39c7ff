"""The shipped artifacts (package data in edge_runtime/models/) and how a CLI choice maps to one.

Files are named `<model id>_<precision>.<onnx|tflite>` (e.g. `fsrcnn-s_x2_int8.tflite`), each
with a model card `<same name>.json` written by `quantize`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.backends import backend_for, load_upscaler
from edge_runtime.ensemble import SelfEnsemble
from edge_runtime.errors import BackendError

MODELS_DIR = Path(__file__).parent / "models"
FAMILIES = ("fsrcnn", "fsrcnn-s")
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Artifact:
    path: Path
    family: str
    scale: int
    precision: str
    backend: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def card(self) -> dict:
        card_path = self.path.with_name(self.path.name + ".json")
        return json.loads(card_path.read_text()) if card_path.is_file() else {}

    def set5_psnr(self) -> float:
        return float(self.card.get("quality", {}).get("Set5", {}).get("psnr", float("nan")))


def parse_name(path: Path) -> Artifact | None:
    """`fsrcnn-s_x2_int8.onnx` -> Artifact; None for names that do not follow the scheme."""
    try:
        stem, ext = path.name.rsplit(".", 1)
        family, scale, precision = stem.rsplit("_", 2)
        backend = backend_for(path)
    except (ValueError, BackendError):
        return None
    if family not in FAMILIES or precision not in PRECISIONS or not scale.startswith("x") or not scale[1:].isdigit():
        return None
    return Artifact(path, family, int(scale[1:]), precision, backend)


def shipped(models_dir: Path = MODELS_DIR) -> list[Artifact]:
    found = [parse_name(p) for p in sorted(models_dir.glob("*")) if p.suffix in (".onnx", ".tflite")]
    return [a for a in found if a is not None]


def check_scale(upscaler, path: Path, scale: int) -> None:
    """Run an 8x8 probe: a model that does not upscale by `scale` is refused with a clear error."""
    out = upscaler.run(np.zeros((8, 8), np.uint8))
    if out.shape != (8 * scale, 8 * scale):
        factor = out.shape[0] / 8
        raise BackendError(f"{Path(path).name} upscales x{factor:g}, not the x{scale} asked for")


def find(family: str, scale: int, precision: str | None, backend: str | None,
         models_dir: Path = MODELS_DIR) -> list[Artifact]:
    """Shipped artifacts matching the choice (None = any), best quality first."""
    matches = [a for a in shipped(models_dir)
               if (family == "auto" or a.family == family) and a.scale == scale
               and precision in (None, a.precision) and backend in (None, a.backend)]
    return sorted(matches, key=lambda a: -np.nan_to_num(a.set5_psnr(), nan=0.0))


def resolve(model: str, scale: int, precision: str | None, backend: str | None,
            models_dir: Path = MODELS_DIR) -> list[Artifact] | Path:
    """A path for a file given on the command line, else the shipped candidates for the choice."""
    if model not in FAMILIES and model != "auto":
        path = Path(model)
        if not path.is_file():
            raise BackendError(f"model not found: {model} (use fsrcnn, fsrcnn-s, auto or a .onnx/.tflite file)")
        if precision:  # the file's own precision is what runs; a flag that seems to change it would mislead
            raise BackendError(f"--precision chooses among the shipped models; {path.name} runs as it is (drop --precision)")
        return path
    candidates = find(model, scale, precision, backend, models_dir)
    if not candidates:
        wanted = " ".join(x for x in (model, f"x{scale}", precision, backend) if x)
        have = ", ".join(a.name for a in shipped(models_dir)) or "none"
        raise BackendError(f"no shipped model for {wanted} (shipped: {have})")
    return candidates


def choose_form(candidates: list[Artifact], precision: str | None, backend: str | None) -> Artifact:
    """What a family runs as: the best-scoring of the candidates a given precision/backend left, else INT8 on
    LiteRT, the form the benchmarks ship as fastest."""
    if precision or backend:
        return candidates[0]
    order = {("int8", "litert"): 0, ("int8", "onnxruntime"): 1, ("fp32", "onnxruntime"): 2, ("fp32", "litert"): 3}
    return min(candidates, key=lambda a: order.get((a.precision, a.backend), 9))


def open_model(path: Path, scale: int, threads: int, backend: str | None = None):
    upscaler = load_upscaler(path, threads, backend)
    check_scale(upscaler, path, scale)
    return upscaler


def open_shipped(model: str = "fsrcnn-s", scale: int = 2, precision: str | None = None, backend: str | None = None,
                 threads: int = 0, ensemble: bool = False):
    """An upscaler for code that embeds edge-sr: a family (its fastest form unless `precision` or `backend`
    chooses) or a .onnx/.tflite file, the same choices as the CLI's `--model` but `auto`, which measures;
    `ensemble`, as `--ensemble`.

        sr = open_shipped("fsrcnn-s", scale=2)
        hr_bgr = sr.upscale_bgr(cv2.imread("photo.png"))
    """
    if model == "auto":
        raise BackendError("open_shipped takes a family or a model file; auto measures a stream (edge-sr --model auto)")
    choice = resolve(model, scale, precision, backend)
    if isinstance(choice, Path):
        upscaler = open_model(choice, scale, threads, backend)
    else:
        artifact = choose_form(choice, precision, backend)
        upscaler = open_model(artifact.path, scale, threads, artifact.backend)
    return SelfEnsemble(upscaler) if ensemble else upscaler


def default_workers(threads: int) -> int:
    """One single-threaded SR worker per thread, taking frames in turn. Measured end to end with 2
    threads (benchmarks/stream_targets.py, results/stream_targets.json): two workers beat one two-threaded
    interpreter for most shipped x2 artifacts, FP32 and INT8 alike, in every run; the exceptions change
    from run to run within the runs' spread. One interpreter waits on its slower thread while capture and
    output hold a core."""
    return threads


def open_workers(path: Path, scale: int, threads: int, workers: int, backend: str | None = None) -> list:
    """`workers` interpreters sharing `threads` cores, for the pipeline's SR workers, which take
    frames in turn (see default_workers for when that pays)."""
    workers = max(1, min(workers, threads))
    return [open_model(path, scale, max(1, threads // workers), backend) for _ in range(workers)]
