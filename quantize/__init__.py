"""Checkpoints -> deployable FP32/INT8 ONNX and TFLite artifacts with model cards."""
