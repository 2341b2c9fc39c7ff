"""`edge-sr`: stream frames through CPU super-resolution and check them against a target fps.

Bad input ends with one `edge-sr: error: ...` line and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from edge_runtime import __version__
from edge_runtime.backends import BACKENDS
from edge_runtime.ensemble import SYMMETRIES, SelfEnsemble
from edge_runtime.errors import CliError, EdgeSRError
from edge_runtime.files import check_writable, write_json
from edge_runtime.models import PRECISIONS, choose_form, default_workers, open_workers, resolve, shipped

EXAMPLES = """examples:
  edge-sr --demo --seconds 5                 built-in scene, live PSNR against its ground truth
  edge-sr --camera --scale 2                 Pi camera (picamera2) or the first V4L2/USB camera
  edge-sr --camera /dev/video2 --size 640x480 --serve 8080
  edge-sr --video in.mp4 --output out.mp4 --model fsrcnn --precision int8
  edge-sr --images photos/ --scale 3 --output photos_x3/ --report report.json
  edge-sr --images photo.jpg --output photo_x2.png
  edge-sr --images photo.jpg --output photo_x2.png --ensemble
  edge-sr --video in.mp4 --psnr              PSNR on your own frames (each shrunk, then upscaled)
  edge-sr bench --data-dir datasets/         fps and PSNR of every shipped model on this device
  edge-sr models                             the shipped models and their model cards' PSNR
"""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise CliError(f"{message} (see {self.prog} --help)")


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 640x480, not {text!r}") from None
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"--size {text} is out of range (8..8192 per side)")
    return w, h


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
        return value
    return parse


def parse_serve(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--serve takes [HOST:]PORT, not {text!r}")
    return host or "127.0.0.1", int(port)


def stream_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="edge-sr", description=__doc__, epilog=EXAMPLES,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"edge-sr {__version__}")
    src = p.add_argument_group("source (choose one)")
    src.add_argument("--camera", nargs="?", const="auto", metavar="N|PATH",
                     help="picamera2 if present, else V4L2/USB camera N or a device path")
    src.add_argument("--video", metavar="FILE", help="any video file OpenCV reads")
    src.add_argument("--images", metavar="DIR|FILE", help="a folder of images, or one image")
    src.add_argument("--demo", action="store_true", help="built-in moving scene with known ground truth")
    m = p.add_argument_group("model")
    m.add_argument("--scale", type=int, choices=(2, 3, 4), default=2, help="upscaling factor (default: 2)")
    m.add_argument("--model", default="auto", metavar="{fsrcnn,fsrcnn-s,auto,PATH}",
                   help="model family, a .onnx/.tflite file, or auto (default: the best PSNR that holds --target-fps here)")
    m.add_argument("--precision", choices=PRECISIONS,
                   help="which shipped model of the family (default: int8, or auto's measured pick)")
    m.add_argument("--backend", choices=BACKENDS,
                   help="which runtime runs a shipped model (default: litert, or auto's measured pick)")
    m.add_argument("--threads", type=positive(int), default=os.cpu_count() or 1,
                   help="CPU threads for SR (default: all cores)")
    m.add_argument("--workers", type=positive(int),
                   help="SR workers, each with its own interpreter on threads/workers cores, taking frames in "
                        "turn (default: one per thread, measured fastest)")
    m.add_argument("--ensemble", action="store_true",
                   help="x8 self-ensemble: each frame through the model turned and mirrored 8 ways, averaged; "
                        "a higher PSNR for 8x the time (for photos; README)")
    run = p.add_argument_group("stream")
    run.add_argument("--size", type=parse_size, help="frame size WxH (camera request; resize for files)")
    run.add_argument("--target-fps", type=positive(float), default=24.0,
                     help="the throughput the stream is checked against (default: 24)")
    run.add_argument("--frames", type=positive(int), help="stop after N frames")
    run.add_argument("--seconds", type=positive(float), help="stop after S seconds")
    run.add_argument("--psnr", action="store_true",
                     help="score PSNR on these frames: each is shrunk by --scale first and the SR output compared "
                          "with the original (the demo is always scored; the shrinking takes capture time, so "
                          "measure fps without it)")
    out = p.add_argument_group("output")
    out.add_argument("--output", metavar="FILE|DIR/",
                     help="write the upscaled video (out.mp4), one image (photo_x2.png, for one frame), or "
                          "images into a folder (a path ending in /)")
    out.add_argument("--display", action="store_true", help="show an OpenCV window")
    out.add_argument("--serve", type=parse_serve, metavar="[HOST:]PORT", help="live page, bicubic vs SR (127.0.0.1 unless HOST)")
    out.add_argument("--token", help="require ?token=TOKEN on the live page")
    out.add_argument("--report", metavar="FILE", help="write the end-of-stream report (JSON)")
    out.add_argument("--quiet", action="store_true", help="no live status line")
    return p


def open_source(args):
    from edge_runtime import sources

    chosen = [name for name in ("camera", "video", "images", "demo") if getattr(args, name)]
    if len(chosen) != 1:
        raise CliError("choose exactly one source: --camera, --video FILE, --images DIR|FILE or --demo")
    if args.demo:
        if args.psnr:
            raise CliError("--demo is always scored against its own truth; drop --psnr")
        from edge_runtime.demo import DemoSource

        return DemoSource(args.size or (640, 480), args.scale)
    if args.video:
        source = sources.VideoSource(args.video, args.size)
    elif args.images:
        source = sources.ImageFolderSource(args.images, args.size)
    else:
        source = sources.open_camera(None if args.camera == "auto" else args.camera, args.size)
    return sources.ShrunkSource(source, args.scale) if args.psnr else source


def pick_model(args, size: tuple[int, int], log):
    """(SR workers' upscalers, description) for the CLI's model choice."""
    upscalers, info = open_choice(args, size, log)
    if args.ensemble:
        upscalers = [SelfEnsemble(u) for u in upscalers]
    return upscalers, {**info, "ensemble": args.ensemble}


def open_choice(args, size: tuple[int, int], log):
    """The model the flags name (or auto's measured pick), as the SR workers' interpreters, and its description."""
    from edge_runtime.autoselect import MARGIN, choose

    choice = resolve(args.model, args.scale, args.precision, args.backend)
    if isinstance(choice, Path):
        upscalers = open_workers(choice, args.scale, args.threads, args.workers or default_workers(args.threads),
                                 args.backend)
        return upscalers, {"model": str(choice), "workers": len(upscalers)}
    if args.model == "auto":
        passes = len(SYMMETRIES) if args.ensemble else 1  # the target holds for the frame, not for one pass
        artifact, fps = choose(choice, size, args.scale, args.threads, args.target_fps * passes, log=log)
        why = "" if fps >= MARGIN * args.target_fps * passes else \
            f"; none holds {args.target_fps:g} fps at {size[0]}x{size[1]} here, so the fastest"
        log(f"auto: chose {artifact.name} ({fps / passes:.1f} fps model-only, Set5 {artifact.set5_psnr():.2f} dB{why})")
    else:
        artifact = choose_form(choice, args.precision, args.backend)
    workers = args.workers or default_workers(args.threads)
    upscalers = open_workers(artifact.path, args.scale, args.threads, workers, artifact.backend)
    return upscalers, {"model": artifact.name, "family": artifact.family, "precision": artifact.precision,
                       "backend": artifact.backend, "workers": len(upscalers), "set5_psnr": artifact.set5_psnr()}


def stream(argv: list[str]) -> int:
    from edge_runtime.pipeline import Pipeline
    from edge_runtime.sinks import DisplaySink, ImageFileSink, ImageFolderSink, VideoFileSink, is_folder, is_image
    from edge_runtime.stats import StreamStats

    args = stream_parser().parse_args(argv)
    if args.token and not args.serve:
        raise CliError("--token only applies with --serve")
    if args.serve and args.serve[0] not in ("127.0.0.1", "localhost", "::1") and not args.token:
        raise CliError("--serve on a non-loopback host needs --token (the page would be open to the network)")
    original = args.video or args.images
    if args.output and original and Path(args.output).resolve() == Path(original).resolve():
        raise CliError(f"--output {args.output} is the input: the upscaled output would replace the original")
    if args.report:
        check_writable(Path(args.report).parent)  # before the stream, not after it
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    source = open_source(args)
    sinks = []
    try:
        size = source.size
        known = [n for n in (source.frame_count, args.frames) if n]
        total = min(known) if known else None
        if args.output and is_folder(args.output):
            sinks.append(ImageFolderSink(args.output))
        elif args.output and is_image(args.output):
            if total != 1:
                raise CliError(f"--output {args.output} holds one image, but the source has "
                               f"{total or 'an open number of'} frames: write a folder (--output DIR/) or add --frames 1")
            sinks.append(ImageFileSink(args.output))
        elif args.output:
            sinks.append(VideoFileSink(args.output, getattr(source, "fps", 30.0)))
        if args.display:
            sinks.append(DisplaySink())
        if args.serve:
            from edge_runtime.server import LiveServer

            server = LiveServer(*args.serve, token=args.token)
            sinks.append(server)
            log(f"live page: {server.url}")
        upscalers, info = pick_model(args, size, log)  # after the outputs: a bad one fails before auto's measuring
        stats = StreamStats(args.target_fps, total=total)
        pipeline = Pipeline(source, upscalers, args.scale, sinks, stats, args.frames, args.seconds,
                            status=None if args.quiet else sys.stderr)
        summary = pipeline.run()
        complete = True
    except BaseException:
        complete = False
        raise
    finally:
        for sink in sinks:
            sink.close(complete=complete)
        source.close()
    report = {"edge_sr": __version__, "source": source.name, "size": list(size), "scale": args.scale,
              "threads": args.threads, **info, **summary}
    skipped = getattr(source, "skipped", [])
    if skipped:
        report["skipped"] = skipped
        print(f"edge-sr: skipped {len(skipped)} file(s) OpenCV cannot read: {', '.join(skipped)}", file=sys.stderr)
    if args.report:
        write_json(args.report, report)
    psnr = report.get("psnr")
    extra = f", PSNR {psnr['sr']:.2f} dB vs bicubic {psnr['bicubic_opencv']:.2f}" if psnr else ""
    latency = report["latency_ms"].get("p50", 0)
    if report["frames"] == 1:  # one image: its time is the news, not a frame rate
        print(f"1 frame in {latency / 1000:.2f} s{extra}")
    else:
        print(f"{report['frames']} frames, {report['fps']:.1f} fps ({report['verdict']} vs {args.target_fps:g}), "
              f"latency p50 {latency:.0f} ms, dropped {report['dropped']}{extra}")
    return 130 if summary.get("interrupted") else 0


def list_models(argv: list[str]) -> int:
    """`edge-sr models`: what --model, --precision and --backend choose from, with the cards' quality."""
    p = OneLineParser(prog="edge-sr models", description=list_models.__doc__)
    p.add_argument("--json", action="store_true", help="one JSON object per model instead of a table")
    args = p.parse_args(argv)
    rows = []
    for artifact in shipped():
        quality = artifact.card.get("quality", {})
        rows.append({"artifact": artifact.name, "family": artifact.family, "scale": artifact.scale,
                     "precision": artifact.precision, "backend": artifact.backend,
                     **{name: quality.get(name, {}).get("psnr") for name in ("Set5", "Set14")},
                     "kb": round(artifact.path.stat().st_size / 1024, 1)})
    if args.json:
        print("\n".join(json.dumps(row) for row in rows))
        return 0
    print(f"{'artifact':<26} {'precision':<9} {'backend':<11} {'Set5 dB':>7} {'Set14 dB':>8} {'size':>8}")
    for row in rows:
        psnr = [f"{row[name]:.2f}" if row[name] is not None else "-" for name in ("Set5", "Set14")]
        print(f"{row['artifact']:<26} {row['precision']:<9} {row['backend']:<11} {psnr[0]:>7} {psnr[1]:>8} "
              f"{row['kb']:>5.1f} KB")
    return 0


def _stop_on_sigterm(signum, frame):
    """systemd stops the service with SIGTERM: end the stream as Ctrl-C does (report written, video closed)."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # FFmpeg's own lines ("moov atom not found") would come before ours and break into the status line; read
    # once, at OpenCV's first video. Fatal ones still print; setting the variable yourself keeps its level.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
    try:
        if argv[:1] == ["bench"]:
            from edge_runtime.bench import bench_main

            return bench_main(argv[1:])
        if argv[:1] == ["models"]:
            return list_models(argv[1:])
        return stream(argv)
    except EdgeSRError as err:
        print(f"edge-sr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-sr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edge-sr models | head`: the reader left; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
