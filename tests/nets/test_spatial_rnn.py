import pytest
import torch

from smokeclear.nets.spatial_rnn import (
    SpatialRNN,
    four_direction_scan,
    linear_scan,
    sequential_scan,
)

SHAPES = [(2, 3, 5, 7), (1, 2, 16, 33), (1, 2, 1, 6), (1, 1, 4, 1), (1, 1, 1, 1)]
DIRECTIONS = [(3, False), (3, True), (2, False), (2, True)]


def _random_inputs(shape, seed=0, dtype=torch.float32):
    """x and g uniform in [-1, 1], p uniform in [0, 1] (what a sigmoid gives)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator) * 2 - 1
    g = torch.rand(shape, generator=generator) * 2 - 1
    p = torch.rand(shape, generator=generator)
    return x.to(dtype), g.to(dtype), p.to(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("dim", "reverse"), DIRECTIONS)
def test_linear_scan_matches_sequential_fp32(shape, dim, reverse):
    x, g, p = _random_inputs(shape)
    expected = sequential_scan(x, g, p, dim, reverse)
    actual = linear_scan(x, g, p, dim, reverse)
    assert actual.shape == shape and actual.dtype == torch.float32
    error = (actual - expected).abs().max().item()
    assert error < 1e-5, f"doubling scan should equal the loop, max error {error:.2e}"


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 16, 33)])
@pytest.mark.parametrize(("dim", "reverse"), DIRECTIONS)
@pytest.mark.parametrize("p_low", [0.0, 0.95])
def test_linear_scan_fp16_stays_close_to_fp32_reference(shape, dim, reverse, p_low):
    x, g, p = _random_inputs(shape, seed=1)
    p = p_low + (1 - p_low) * p  # 0.95: long memory, |h| grows towards the line length
    expected = sequential_scan(x, g, p, dim, reverse)
    actual = linear_scan(x.half(), g.half(), p.half(), dim, reverse)
    assert actual.dtype == torch.float16
    # Forward error of a tree of ceil(log2 L) affine combines: each level adds about
    # one FP16 rounding (unit roundoff u = 2^-11) relative to the sum of the
    # absolute terms |g x| * prod(p), and rounding x, g, p to FP16 adds ~3u more.
    # So |error| <= (steps + 4) * u * magnitude, magnitude = the scan of |g x|.
    # Measured: at most ~4u * magnitude (33 px: ~1.4e-3 absolute for p in [0, 1]).
    steps = (shape[dim] - 1).bit_length()
    magnitude = sequential_scan(x.abs(), g.abs(), p, dim, reverse)
    bound = (steps + 4) * 2.0**-11 * magnitude + 1e-6
    excess = (actual.float() - expected).abs() - bound
    assert excess.max().item() <= 0, (
        f"FP16 error above (steps + 4) * u * magnitude by {excess.max().item():.2e}"
    )


@pytest.mark.parametrize(("dim", "reverse"), DIRECTIONS)
def test_zero_memory_gives_the_weighted_input(dim, reverse):
    x, g, _ = _random_inputs((2, 3, 5, 7))
    actual = linear_scan(x, g, torch.zeros_like(x), dim, reverse)
    torch.testing.assert_close(actual, g * x, rtol=0, atol=0)


@pytest.mark.parametrize(("dim", "reverse"), DIRECTIONS)
def test_full_memory_and_unit_gain_give_the_cumulative_sum(dim, reverse):
    x, _, _ = _random_inputs((1, 2, 16, 33))
    ones = torch.ones_like(x)
    expected = x.flip(dim).cumsum(dim).flip(dim) if reverse else x.cumsum(dim)
    torch.testing.assert_close(linear_scan(x, ones, ones, dim, reverse), expected)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 16, 33)])
def test_four_direction_scan_is_the_max_of_four_sequential_scans(shape):
    batch, channels, height, width = shape
    x, _, _ = _random_inputs(shape)
    _, g, p = _random_inputs((batch, 4 * channels, height, width), seed=2)
    scans = [
        sequential_scan(x, g[:, d * channels : (d + 1) * channels],
                        p[:, d * channels : (d + 1) * channels], dim, reverse)
        for d, (dim, reverse) in enumerate(DIRECTIONS)
    ]  # fmt: skip
    expected = torch.stack(scans).amax(dim=0)
    torch.testing.assert_close(four_direction_scan(x, g, p), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(SpatialRNN()(x, g, p), expected, rtol=0, atol=1e-5)


def test_gradients_match_the_sequential_scan():
    x, g, p = (t.double().requires_grad_() for t in _random_inputs((1, 2, 3, 6)))
    for dim, reverse in DIRECTIONS:
        assert torch.autograd.gradcheck(
            lambda x, g, p, dim=dim, reverse=reverse: linear_scan(x, g, p, dim, reverse),
            (x, g, p),
        ), f"gradcheck failed for dim={dim}, reverse={reverse}"


def test_four_direction_scan_backward_is_finite_and_matches_the_loop():
    x, _, _ = _random_inputs((1, 2, 5, 9))
    _, g, p = _random_inputs((1, 8, 5, 9), seed=3)
    weight = torch.randn(1, 2, 5, 9, generator=torch.Generator().manual_seed(4))
    gradients = []
    for scan in (linear_scan, sequential_scan):
        leaves = [t.clone().requires_grad_() for t in (x, g, p)]
        channels = 2
        scans = [
            scan(leaves[0], leaves[1][:, d * channels : (d + 1) * channels],
                 leaves[2][:, d * channels : (d + 1) * channels], dim, reverse)
            for d, (dim, reverse) in enumerate(DIRECTIONS)
        ]  # fmt: skip
        (torch.stack(scans).amax(dim=0) * weight).sum().backward()
        gradients.append([leaf.grad for leaf in leaves])
    for fast, reference, name in zip(*gradients, "xgp", strict=True):
        assert torch.isfinite(fast).all(), f"grad of {name} has non-finite values"
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5, msg=f"grad of {name}")


def test_rejects_bad_input():
    x = torch.rand(1, 2, 4, 5)
    with pytest.raises(ValueError, match="same"):
        linear_scan(x, torch.rand(1, 2, 4, 6), x, 3)
    with pytest.raises(ValueError, match="dim"):
        linear_scan(x, x, x, 1)
    with pytest.raises(ValueError, match="max_length"):
        linear_scan(x, x, x, 3, max_length=4)
    with pytest.raises(ValueError, match="4C"):
        four_direction_scan(x, x, x)
    with pytest.raises(ValueError, match="max_length"):
        SpatialRNN(max_length=4)(x, torch.rand(1, 8, 4, 5), torch.rand(1, 8, 4, 5))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_onnx_export_has_only_plain_ops_and_matches_onnxruntime(tmp_path):
    """Dynamic H and W need the fixed step count: 32 -> 5 steps, beyond 8 and 12 rows."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from torch.export import Dim

    from smokeclear.export.onnx_export import quiet_exporter

    module = SpatialRNN(max_length=32).eval()
    height, width = Dim("h", min=2, max=32), Dim("w", min=2, max=32)
    spatial = {2: height, 3: width}
    sample = _four_direction_inputs(8, 12, seed=5)
    with quiet_exporter():
        program = torch.onnx.export(
            module,
            sample,
            dynamo=True,
            input_names=["x", "g", "p"],
            dynamic_shapes={"x": spatial, "g": spatial, "p": spatial},
            opset_version=18,
            verbose=False,
        )
    path = tmp_path / "spatial_rnn.onnx"
    program.save(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model)

    op_types = {node.op_type for node in model.graph.node}
    op_types |= {node.op_type for function in model.functions for node in function.node}
    assert not op_types & {"Loop", "Scan", "CumSum", "If"}, f"control flow in graph: {op_types}"
    plain = {"Pad", "Slice", "Mul", "Add", "Max", "Split", "Constant"}
    assert op_types <= plain, f"unexpected ops {op_types - plain}"
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) for d in dims[2:]), f"H and W should be dynamic: {dims}"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for rows, columns in [(8, 12), (16, 20)]:
        inputs = _four_direction_inputs(rows, columns, seed=rows)
        with torch.no_grad():
            expected = module(*inputs)
        actual = session.run(None, {n: t.numpy() for n, t in zip("xgp", inputs, strict=True)})[0]
        error = (torch.from_numpy(actual) - expected).abs().max().item()
        assert error < 1e-5, f"onnxruntime vs torch at {rows}x{columns}: max error {error:.2e}"


def _four_direction_inputs(rows, columns, seed):
    x, _, _ = _random_inputs((1, 2, rows, columns), seed=seed)
    _, g, p = _random_inputs((1, 8, rows, columns), seed=seed + 100)
    return x, g, p
