"""CPU inference backends behind one interface: Y plane (uint8) in, HR Y (float, 0..255) out.

ONNX Runtime runs the .onnx artifacts (FP32 and QDQ INT8); LiteRT runs the .tflite ones
(`ai_edge_litert` first, `tflite_runtime` as a fallback). Both release the GIL while they
compute, so the stream pipeline can overlap capture, SR and output in threads.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.cpu import int8_pair_sums_saturate
from edge_runtime.errors import BackendError
from edge_runtime.frames import Frame, compose

BACKENDS = ("onnxruntime", "litert")


SUFFIXES = {"onnxruntime": ".onnx", "litert": ".tflite"}  # the model file each backend runs


def backend_for(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    for backend, its_suffix in SUFFIXES.items():
        if suffix == its_suffix:
            return backend
    raise BackendError(f"{path}: unknown model format {suffix!r} (expected .onnx or .tflite)")


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Float 0..255 -> uint8, rounded and clipped."""
    return np.clip(y + 0.5, 0, 255).astype(np.uint8)


PROBE = (3, 5)  # an odd frame size: a graph that runs on 2x2 superpixels does not keep its shape


def keeps_shape(out_shape: tuple[int, int]) -> bool:
    """Whether a model's output for a PROBE-sized frame is that frame scaled."""
    (out_h, out_w), (h, w) = out_shape, PROBE
    return out_h % h == 0 and out_w % w == 0 and out_h // h == out_w // w


def pad_to_even(y: np.ndarray) -> np.ndarray:
    """The last row/column repeated to even sizes (a zero row instead would be a dark edge the net
    sharpens into the last real row); the caller crops the output back."""
    return np.pad(y, ((0, y.shape[0] % 2), (0, y.shape[1] % 2)), mode="edge")


def card_border(path: Path) -> int:
    """The `mirrored_border` of the model card beside `path` (quantize writes one per artifact): LR pixels a
    padding-free model wants each frame extended by, mirrored. 0 without a card (a file from elsewhere)."""
    card = Path(str(path) + ".json")
    try:
        return int(json.loads(card.read_text()).get("mirrored_border", 0)) if card.is_file() else 0
    except (ValueError, TypeError, AttributeError) as err:
        raise BackendError(f"{card}: not a model card ({err})") from None


class Upscaler:
    """`run(y)`: float HR Y (for measuring PSNR); `upscale(y)`: uint8 HR Y (for streaming);
    `upscale_bgr(image)`: a whole BGR image, as the stream upscales a frame.

    A padding-free model (`border` > 0, from its card) sees each frame extended by `border` mirrored pixels
    (OpenCV's BORDER_REFLECT, as its training validated: training.model.upscale_image), its output cropped back.

    A frame over `whole_limit` pixels goes through the model in tiles of `tile` x `tile` LR pixels, each
    with `margin` pixels of its neighbours' context, so memory stays bounded: a 12-megapixel photo took
    7 to 17 GB through the FSRCNN x2 artifacts in one piece (benchmarks/large_photo.py). The margin is twice FSRCNN's reach (8 LR pixels: with a
    margin of 6, FSRCNN x2's tiles differ from the whole frame), so each tile's output is the whole frame's,
    bit for bit (tested); both are even, so a superpixel head's 2x2 blocks fall where they do in the whole frame."""

    tile, margin, whole_limit = 512, 16, 1280 * 720
    border = 0

    def _run(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _upscale(self, y: np.ndarray) -> np.ndarray:
        return to_uint8(self._run(y))

    def run(self, y: np.ndarray) -> np.ndarray:
        return self._mirrored(y, self._run)

    def upscale(self, y: np.ndarray) -> np.ndarray:
        return self._mirrored(y, self._upscale)

    def _mirrored(self, y: np.ndarray, forward) -> np.ndarray:
        b = self.border
        if not b:
            return self._tiled(y, forward)
        out = self._tiled(cv2.copyMakeBorder(y, b, b, b, b, cv2.BORDER_REFLECT), forward)
        edge = out.shape[0] // (y.shape[0] + 2 * b) * b
        return out[edge:out.shape[0] - edge, edge:out.shape[1] - edge]

    def upscale_bgr(self, image: np.ndarray) -> np.ndarray:
        """BGR (or grey) uint8 -> BGR uint8 at scale x the size: Y through the net, chroma bilinear."""
        frame = Frame.from_bgr(image, 0)
        return compose(self.upscale(frame.y), frame.chroma)

    def _tiled(self, y: np.ndarray, forward) -> np.ndarray:
        h, w = y.shape
        if h * w <= self.whole_limit:
            return forward(y)
        out = None
        for (top, bottom), (y0, y1) in self._windows(h):
            for (left, right), (x0, x1) in self._windows(w):
                part = forward(y[y0:y1, x0:x1])
                s = part.shape[0] // (y1 - y0)
                if out is None:
                    out = np.empty((h * s, w * s), part.dtype)
                out[top * s:bottom * s, left * s:right * s] = \
                    part[(top - y0) * s:(bottom - y0) * s, (left - x0) * s:(right - x0) * s]
        return out

    def _windows(self, n: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Along one axis of n pixels: ((core start, end), (window start, end)) per tile. Cores of equal, even
        length cover the axis; each window holds its core and `margin` pixels beyond it, or reaches the frame's
        edge. Every window has one length (LiteRT reallocates its tensors at each new shape), at an even start
        (superpixel heads), but the last of an odd axis, one pixel longer."""
        tiles = -(-n // self.tile)
        core = -(-n // tiles) + (-(-n // tiles)) % 2
        length = min(core + 2 * self.margin, n)
        windows = []
        for start in range(0, n, core):
            end = min(start + core, n)
            w0 = min(max(start - self.margin, 0), n - length)
            w0 -= w0 % 2
            windows.append(((start, end), (w0, max(w0 + length, min(end + self.margin, n)))))
        return windows


# x86 CPUs without VNNI (AVX2, AVX-512 before VNNI) run ONNX Runtime's U8S8 INT8 convs with VPMADDUBSW, whose
# int16 sums of product pairs saturate: on an AVX2-only AMD EPYC every shipped INT8 ONNX artifact lost 2 to 10 dB
# on Set5 without this option, which has ORT turn the int8 weights into uint8 (exactly) for its non-saturating
# U8U8 kernels. Only there: on an AVX512-VNNI EPYC the option halved the INT8 artifacts' fps (fsrcnn_x3 4.6
# against 9.5, fsrcnn_x2 5.9 against 11.6, at 640x360), and VNNI's U8S8 sums are exact. ARM CPUs ignore it.
ORT_SESSION_CONFIG = {"session.x64quantprecision": "1"} if int8_pair_sums_saturate() else {}


class OnnxUpscaler(Upscaler):
    """ONNX Runtime session; the artifacts take float32 [1,1,h,w] in 0..1 (INT8 is QDQ inside). A graph
    whose head runs on 2x2 superpixels (quantize.onnx_export.ReLUGraph) needs even sizes: found by a
    probe at the first odd frame, which then gets its last row/column repeated and its output cropped."""

    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for key, value in ORT_SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        options.log_severity_level = 3
        if not Path(path).is_file():
            raise BackendError(f"model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own exception types for bad files
            raise BackendError(f"{path}: not a usable ONNX model ({str(err).splitlines()[0][:160]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.even_only: bool | None = None  # known at the first odd frame

    def _forward(self, y: np.ndarray) -> np.ndarray:
        x = (y.astype(np.float32) * (1.0 / 255.0))[None, None]
        return self.session.run(None, {self.input_name: x})[0][0, 0] * 255.0

    def _run(self, y: np.ndarray) -> np.ndarray:
        h, w = y.shape
        if not (h % 2 or w % 2):
            return self._forward(y)
        if self.even_only is None:
            self.even_only = not keeps_shape(self._forward(np.zeros(PROBE, np.uint8)).shape)
        if not self.even_only:
            return self._forward(y)
        out = self._forward(pad_to_even(y))
        scale = out.shape[0] // (h + h % 2)
        return out[:h * scale, :w * scale]


DELEGATE_BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextmanager
def _without_delegate_banner():
    """LiteRT's C++ prints DELEGATE_BANNER on stderr at an interpreter's first allocation, with no Python
    switch to turn it off: stderr's file descriptor goes to a temp file meanwhile, and every other line
    written there is passed on afterwards, so an error is delayed, never lost. Without a writable temp
    folder the banner is simply shown."""
    try:
        held = tempfile.TemporaryFile()
    except OSError:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if line.strip() != DELEGATE_BANNER]
            sys.stderr.write("".join(kept))


def _litert_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BackendError(
                "LiteRT is not installed: pip install ai-edge-litert (or tflite-runtime with numpy<2)"
            ) from None
    return Interpreter


def on_pixel_grid(tensor: dict) -> bool:
    """uint8 with scale 1/255 and zero point 0: each value is a pixel, as the INT8 artifacts take
    their input and give their output (quantize.calibration, quantize.tflite_export.to_pixel_range)."""
    scale, zero = tensor["quantization"]
    return tensor["dtype"] == np.uint8 and zero == 0 and abs(scale * 255 - 1) < 1e-6


class LiteRTUpscaler(Upscaler):
    """LiteRT interpreter with dynamic H/W (tensors resized when the frame size changes).

    Full-integer artifacts take int8/uint8 input: the quantization parameters from the
    model map Y/255 onto it, and the output back to 0..255. A graph that runs on 2x2 superpixels
    (quantize.rewrites.superpixel_conv) needs even sizes: when a probe shows it does not keep odd ones,
    odd frames get their last row/column repeated (pad_to_even) and the output is cropped back.
    """

    backend = "litert"

    def __init__(self, path: Path, threads: int = 0):
        interpreter_class = _litert_interpreter_class()
        if not Path(path).is_file():
            raise BackendError(f"model not found: {path}")
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        except Exception as err:
            raise BackendError(f"{path}: not a usable TFLite model ({str(err).splitlines()[0][:160]})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.shape: tuple[int, int] | None = None
        self.padded: tuple[int, int] | None = None
        self.even_only: bool | None = None  # known at the first odd frame
        self.lut: np.ndarray | None = None

    def _allocate(self, h: int, w: int) -> tuple[int, int]:
        """Resize to h x w; returns the output's height and width."""
        self.interpreter.resize_tensor_input(self.input["index"], [1, h, w, 1])
        with _without_delegate_banner() if self.shape is None else nullcontext():  # the first applies the delegate
            self.interpreter.allocate_tensors()
        return tuple(self.interpreter.get_output_details()[0]["shape"][1:3])

    def _takes_odd_sizes(self) -> bool:
        """Probe once: a superpixel graph refuses a PROBE-sized frame or returns the wrong shape."""
        try:
            return keeps_shape(self._allocate(*PROBE))
        except RuntimeError:
            return False

    def _prepare(self, h: int, w: int) -> None:
        if self.shape != (h, w):
            if (h % 2 or w % 2) and self.even_only is None:
                self.even_only = not self._takes_odd_sizes()
            self.padded = (h + h % 2, w + w % 2) if self.even_only else (h, w)
            self._allocate(*self.padded)
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.shape = (h, w)
            self.lut = None  # quantized output -> uint8 pixel, by the output's raw byte, unless it is a pixel already
            if self.output["dtype"] != np.float32 and not on_pixel_grid(self.output):
                raw = np.arange(256, dtype=np.uint8).view(self.output["dtype"])
                self.lut = to_uint8(self._dequantize(raw))

    def _invoke(self, y: np.ndarray) -> np.ndarray:
        h, w = y.shape
        self._prepare(h, w)
        if self.padded != (h, w):
            y = pad_to_even(y)
        dtype = self.input["dtype"]
        if dtype == np.float32:
            x = y.astype(np.float32) * (1.0 / 255.0)
        else:
            if on_pixel_grid(self.input):
                x = y
            else:
                scale, zero = self.input["quantization"]
                info = np.iinfo(dtype)
                x = np.clip(np.rint(y.astype(np.float32) / 255.0 / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x[None, :, :, None])
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])[0, :, :, 0]
        if self.padded != (h, w):
            scale = out.shape[0] // self.padded[0]
            out = out[:h * scale, :w * scale]
        return out

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        scale, zero = self.output["quantization"]
        return (q.astype(np.float32) - zero) * (scale * 255.0)

    def _run(self, y: np.ndarray) -> np.ndarray:
        out = self._invoke(y)
        return out * 255.0 if self.output["dtype"] == np.float32 else self._dequantize(out)

    def _upscale(self, y: np.ndarray) -> np.ndarray:
        out = self._invoke(y)
        if self.output["dtype"] == np.float32:
            return to_uint8(out * 255.0)
        if self.lut is None:
            return np.ascontiguousarray(out)
        return cv2.LUT(out.view(np.uint8), self.lut)  # a third of numpy's indexing time at 1280x720


def runtime_signature(path: Path) -> str:
    """The runtime and the options that would run `path`: a model's speed changes with them, not only
    with the file (ORT_SESSION_CONFIG alone halved or doubled the INT8 ONNX speed)."""
    if backend_for(path) == "onnxruntime":
        options = ",".join(f"{key}={value}" for key, value in sorted(ORT_SESSION_CONFIG.items()))
        return f"onnxruntime {version('onnxruntime')} {options}".rstrip()
    for package in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            continue
    return "litert missing"


def load_upscaler(path: Path, threads: int = 0, backend: str | None = None, border: int | None = None):
    """The backend that runs `path` (chosen by its suffix unless `backend` is given), mirroring `border` pixels
    around each frame (None: as its model card says)."""
    wanted = backend_for(path)
    if backend and backend != wanted:
        raise BackendError(f"{Path(path).name} runs on {wanted}, not {backend} (drop --backend, or give a "
                           f"{SUFFIXES[backend]} file)")
    upscaler = (OnnxUpscaler if wanted == "onnxruntime" else LiteRTUpscaler)(Path(path), threads)
    upscaler.border = card_border(path) if border is None else border
    return upscaler
