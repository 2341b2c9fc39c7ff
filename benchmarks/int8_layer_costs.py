"""Where an INT8 TFLite graph's time goes: model-only speed of variants of the shipped x2 graph's layer
shapes, each as a ratio to those shapes themselves, timed in one process in interleaved rounds.

The shapes come from the checkpoint's INT8 form (training.model.relu_layers with quantize.qat.INT8_FORM,
the first conv on rows and the head on superpixels as quantize.rewrites.REWRITES do); the weights are
random, so this measures speed only, never quality. Rows:
- "shipped artifact": the real INT8 artifact, to show that the random-weight stand-in times the same;
- "shipped shapes";
- "first conv k x k on one channel": the shapes before the rows rewrite;
- "no mapping layers": what the m 3x3 mapping convs cost;
- "narrow mapping layers": each mapping conv as a 3x3 conv to s channels with no ReLU, then a 1x1 conv
  emitting [relu(z), relu(-z)] (exact in float, fewer MACs, one more linear INT8 tensor per layer);
- "first conv alone, N channels": the first conv (on rows) and a 1x1 conv reading it, at the shipped 2d
  channels, at d + s and at d: what the first layer costs and how that follows its width.

    python benchmarks/int8_layer_costs.py    # writes results/int8_layer_costs.json (needs the [quantize] extra)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, save, time_model  # noqa: E402
from edge_runtime.backends import LiteRTUpscaler  # noqa: E402
from edge_runtime.models import MODELS_DIR  # noqa: E402
from quantize.qat import INT8_FORM  # noqa: E402
from quantize.rewrites import SUPERPIXEL, rows_as_channels, superpixel_conv, superpixel_layers  # noqa: E402
from quantize.tflite_export import convert_function, to_pixel_range  # noqa: E402
from training.evaluate import WEIGHTS_DIR  # noqa: E402
from training.model import CheckpointError, load_weights, relu_layers  # noqa: E402

RNG = np.random.default_rng(0)


def conv(k: int, cin: int, cout: int, relu: bool = True, stride: int = 1) -> tuple:
    """A conv layer (HWIO kernel, bias, ReLU, stride) with He-scaled random weights."""
    kernel = RNG.standard_normal((k, k, cin, cout)).astype(np.float32) * np.sqrt(2 / (k * k * cin))
    return kernel, np.zeros(cout, np.float32), relu, stride


def variants(model) -> dict[str, tuple[list, int]]:
    """label -> (layers, depth_to_space block) with the shapes of `model`'s INT8 graph."""
    c = model.config
    first, shrink, *maps, expand, head = [w.shape for w, _ in relu_layers(model, INT8_FORM)]
    if -1 in superpixel_layers(c.scale):
        kernel, _ = superpixel_conv(np.zeros(head, np.float32), np.zeros(head[0], np.float32), subpixel=c.scale)
        head_conv, block = (conv(kernel.shape[0], kernel.shape[2], kernel.shape[3], False, SUPERPIXEL),
                            SUPERPIXEL * c.scale)
    else:
        head_conv, block = conv(head[-1], head[1], head[0], False), c.scale

    def layer(shape):
        return conv(shape[-1], shape[1], shape[0])

    def on_rows(k, width):
        """The first conv as the rows rewrite runs it: one-hot 1 x k, then k x 1 over k channels."""
        rows, column = rows_as_channels(conv(k, 1, width)[0])
        return [(rows, np.zeros(k, np.float32), False, 1), (column, np.zeros(width, np.float32), True, 1)]

    body_in = on_rows(first[-1], first[0]) + [layer(shrink)]
    body_out = [layer(expand), head_conv]
    narrow = [part for s in maps for part in (conv(s[-1], s[1], s[0] // 2, relu=False), conv(1, s[0] // 2, s[0]))]
    out = {
        "shipped shapes": (body_in + [layer(s) for s in maps] + body_out, block),
        f"first conv {first[-1]}x{first[-1]} on one channel": ([layer(first), layer(shrink)] + [layer(s) for s in maps]
                                                                + body_out, block),
        "no mapping layers": (body_in + body_out, block),
        "narrow mapping layers": (body_in + narrow + body_out, block),
    }
    for width in (first[0], c.d + c.s, c.d):
        out[f"first conv alone, {width} channels"] = (on_rows(first[-1], width) + [conv(1, width, c.scale ** 2, False)],
                                                       c.scale)
    return out


def tf_graph(layers: list, block: int):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32, name="lr")])
    def serve(x):
        for kernel, bias, relu, stride in layers:
            x = tf.nn.bias_add(tf.nn.conv2d(x, kernel, stride, "SAME"), bias)
            x = tf.nn.relu(x) if relu else x
        return tf.nn.depth_to_space(to_pixel_range(x), block)  # as the shipped INT8 graphs end

    return serve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fsrcnn_x2")
    p.add_argument("--size", default="640x360")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    try:
        model = load_weights(WEIGHTS_DIR / f"{args.model}.pt")
    except (CheckpointError, FileNotFoundError) as err:
        print(f"int8_layer_costs: error: {err}", file=sys.stderr)
        return 2
    patches = RNG.random((16, 1, 32, 32)).astype(np.float32)
    runs = {}
    artifact = MODELS_DIR / f"{args.model}_int8.tflite"
    if artifact.is_file():
        runs["shipped artifact"] = (LiteRTUpscaler(artifact, threads=args.threads).run, [])
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, (layers, block)) in enumerate(variants(model).items()):
            path = convert_function(tf_graph(layers, block), Path(tmp) / f"variant{i}.tflite", "int8", patches,
                                    pixel_range=True)
            runs[label] = (LiteRTUpscaler(path, threads=args.threads).run, [])
        for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every variant
            for run, fps in runs.values():
                fps.append(time_model(run, size, args.seconds))
    base = statistics.median(runs["shipped shapes"][1])
    rows = []
    for label, (_, fps) in runs.items():
        median = statistics.median(fps)
        rows.append({"variant": label, "fps": round(median, 2), "ms": round(1000 / median, 1),
                     "vs_shipped_shapes": round(median / base, 2), "runs": [round(v, 2) for v in fps]})
        print(f"{label:36s} {median:6.1f} fps {1000 / median:6.1f} ms  {median / base:.2f}x", flush=True)
    path = save("int8_layer_costs.json", {"machine": machine(), "model": args.model, "size": args.size,
                                          "threads": args.threads, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
