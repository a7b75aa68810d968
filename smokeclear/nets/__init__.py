"""PyTorch networks and the differentiable filters they are built from.

Imported only where torch is present (training, export, the torch backend); the
live path with onnxruntime or TensorRT never imports this package.
"""
