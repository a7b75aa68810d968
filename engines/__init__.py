"""Inference engines: one small interface, one file per backend.

Backends import their heavy library (onnxruntime, torch, tensorrt) inside their own
file; :mod:`smokeclear.engines.select` lists which ones this machine can run.
"""
