"""edge-sr's light runtime: numpy, OpenCV and ONNX Runtime or LiteRT; never torch."""
__version__ = "0.1.0"
