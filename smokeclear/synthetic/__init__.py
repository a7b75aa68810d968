"""Procedural data: the synthetic laparoscopic scene and the smoke model.

numpy + OpenCV only, so that the live source, training and evaluation share one
renderer without pulling in torch or the stream package.
"""
