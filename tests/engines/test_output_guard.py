"""The output guard: one rule, a torch and a numpy implementation that agree, and
``guarded_download`` in front of every engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smokeclear.engines import output_guard
from smokeclear.engines.base import nchw_to_bgr8
from smokeclear.engines.output_guard import (
    CONSTANT,
    NOT_FINITE,
    device_range,
    guarded_download,
    host_range,
    judge,
    sample_step,
)
from smokeclear.engines.torch_engine import TorchEngine
from smokeclear.stream.sources.synthetic import SyntheticSource

SIZES = [(16, 16), (17, 23), (48, 64), (130, 200)]


def textured(rng, height: int = 48, width: int = 64) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_the_device_and_host_statistics_agree_on_float_outputs(rng, height, width):
    # Padded like an engine's output, values out of [0, 1] like a restorer's.
    tensor = rng.uniform(-0.3, 1.3, (1, 3, height + 7, width + 5)).astype(np.float32)
    expected = host_range(tensor, height, width)
    actual = device_range(torch.from_numpy(tensor), height, width)
    assert actual.shape == expected.shape == (2, 3)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_the_device_and_host_statistics_agree_on_uint8_frames(rng, height, width):
    frame = textured(rng, height, width)
    expected = host_range(frame, height, width)
    actual = device_range(torch.from_numpy(frame), height, width)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-7)
    assert expected.min() >= 0.0 and expected.max() <= 1.0, "uint8 frames are in [0, 1] units"


def test_the_subsample_has_about_64_samples_along_the_short_side():
    assert sample_step(16, 16) == 1
    assert sample_step(1080, 1920) == 17
    assert 1080 // sample_step(1080, 1920) in range(60, 68)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_sample_rejects_in_both_implementations(rng, bad):
    tensor = rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    tensor[0, 2, 5, 9] = bad
    reference = host_range(textured(rng, 32, 32), 32, 32)
    assert judge(host_range(tensor, 32, 32), reference) == NOT_FINITE
    assert judge(device_range(torch.from_numpy(tensor), 32, 32), reference) == NOT_FINITE


def test_a_flat_output_is_rejected_only_from_a_textured_input(rng):
    flat = np.full((48, 64, 3), 3, np.uint8)  # black with NaN clamped in a frame model
    assert judge(host_range(flat, 48, 64), host_range(textured(rng), 48, 64)) == CONSTANT
    still = np.full((48, 64, 3), 90, np.uint8)
    still[::3] = 92  # within uint8 rounding of flat: the input decides
    assert judge(host_range(flat, 48, 64), host_range(still, 48, 64)) is None
    # Conservative: one differing sample is enough to pass.
    almost = flat.copy()
    almost[0, 0] = 200
    assert judge(host_range(almost, 48, 64), host_range(textured(rng), 48, 64)) is None


def test_an_output_outside_the_display_range_is_judged_on_its_values(rng):
    reference = host_range(textured(rng, 32, 32), 32, 32)
    # Black on screen, but computed: a poor restorer (an untrained one does this), not a
    # broken engine. The guard stops only the second.
    dark = rng.uniform(-0.2, -0.1, (1, 3, 32, 32)).astype(np.float32)
    assert judge(host_range(dark, 32, 32), reference) is None
    flat = np.full((1, 3, 32, 32), 7.0, np.float32)
    assert judge(host_range(flat, 32, 32), reference) == CONSTANT


class _Constant(nn.Module):
    """A restorer double: every pixel ``value`` (NaN weights give NaN everywhere)."""

    input_multiple = 1

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


@pytest.mark.parametrize(
    ("value", "problem"), [(float("nan"), NOT_FINITE), (float("inf"), NOT_FINITE), (0.5, CONSTANT)]
)
def test_the_torch_engine_is_judged_on_the_device_before_any_download(
    rng, monkeypatch, value, problem
):
    engine = TorchEngine(lambda: _Constant(value))
    engine.start(24, 40)
    frame = textured(rng, 24, 40)
    downloads = []
    monkeypatch.setattr(engine, "download", lambda *args: downloads.append(args))
    output, found = guarded_download(engine, engine.infer(engine.upload(frame)), frame, 24, 40)
    assert (output, found) == (None, problem)
    assert not downloads, "a rejected output is never downloaded"


def test_the_torch_engine_verdict_matches_the_host_verdict_on_its_download():
    source = SyntheticSource(64, 48, seed=5, live=False, max_frames=3)
    source.open()
    engine = TorchEngine(lambda: _Gain())
    engine.start(48, 64)
    while (frame := source.read()) is not None:
        tensor = engine.infer(engine.upload(frame))
        on_device = engine.output_range(tensor, 48, 64)
        on_host = host_range(engine.download(tensor, 48, 64), 48, 64)
        # BGR on the host, RGB on the device; the download clamps and rounds.
        clamped = np.clip(on_device[:, ::-1], 0, 1)
        np.testing.assert_allclose(clamped, on_host, rtol=0, atol=0.5 / 255 + 1e-6)
        reference = host_range(frame, 48, 64)
        assert judge(on_device, reference) == judge(on_host, reference) is None


class _Gain(nn.Module):
    input_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.3 - 0.1  # leaves [0, 1]: download clamps


class _HostEngine:
    """A numpy engine double with a float NCHW output, like onnxruntime's restorer models."""

    name = "host-double"

    def __init__(self, output: np.ndarray) -> None:
        self.output = output
        self.downloads = 0

    def download(self, tensor: np.ndarray, height: int, width: int) -> np.ndarray:
        self.downloads += 1
        return nchw_to_bgr8(np.nan_to_num(tensor), height, width)


def test_a_host_float_output_is_judged_before_its_download(rng):
    frame = textured(rng, 16, 16)
    nan = np.full((1, 3, 16, 16), np.nan, np.float32)
    engine = _HostEngine(nan)
    assert guarded_download(engine, nan, frame, 16, 16) == (None, NOT_FINITE)
    assert engine.downloads == 0
    good = rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    output, problem = guarded_download(_HostEngine(good), good, frame, 16, 16)
    assert problem is None and output.shape == (16, 16, 3)


def test_a_frame_model_output_is_judged_after_its_download(rng):
    frame = textured(rng, 16, 16)
    black = np.zeros((16, 16, 3), np.uint8)  # a uint8 frame model clamps NaN in its graph
    engine = _HostEngine(black)
    engine.download = lambda tensor, height, width: tensor
    assert guarded_download(engine, black, frame, 16, 16) == (None, CONSTANT)


def test_the_module_does_not_import_torch_at_import_time():
    source = output_guard.__file__
    with open(source) as handle:
        top_level = [line for line in handle if line.startswith(("import ", "from "))]
    assert not any("torch" in line for line in top_level), top_level


def test_restore_fails_a_rejected_frame_with_one_line(rng):
    from smokeclear.errors import UserError
    from smokeclear.restore import _run

    engine = TorchEngine(lambda: _Constant(float("nan")))
    engine.start(16, 24)
    with pytest.raises(UserError, match=r"restorer output for this frame is not finite") as caught:
        _run(engine, textured(rng, 16, 24))
    assert "\n" not in str(caught.value)
    healthy = TorchEngine(lambda: _Gain())
    healthy.start(16, 24)
    assert _run(healthy, textured(rng, 16, 24)).shape == (16, 24, 3)
