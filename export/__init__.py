"""Export of restorers: ONNX (and, from issue 3 on, TensorRT engines)."""
