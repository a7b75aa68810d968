"""The registry suite: every registered restorer, at its recipe's tiny size, through the
same checks (the way timm tests every model): forward on odd sizes, backward, the
shipped weights, ONNX parity at two sizes, the FP16 split, one training step and a
short live run through the CLI. Restorer-specific behaviour stays in the tests
beside each restorer.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from smokeclear.cli import main
from smokeclear.config import from_mapping
from smokeclear.errors import UserError
from smokeclear.nets.loading import (
    build_network,
    deployment_module,
    load_restorer,
    read_weights,
    weights_metadata,
)
from smokeclear.nets.wrappers import run_padded
from smokeclear.registry import REGISTRY, get_restorer, resolve
from smokeclear.train import driver
from smokeclear.train.recipe import Recipe, pair_validation, write_tiny_config

pytestmark = pytest.mark.timeout(900)

NAMES = sorted(REGISTRY)


def padded(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def tiny_network(name: str) -> torch.nn.Module:
    spec = get_restorer(name)
    config = from_mapping(resolve(spec.network_config), driver.recipe_of(spec).tiny_network, name)
    torch.manual_seed(0)
    return build_network(spec, config)


@pytest.fixture(scope="module")
def exported(tiny_weights_of, export_restorer):
    """``exported(name) -> (module, fp32 path, fp16 path)``: the deployment module of the
    tiny weights, exported once per restorer."""
    made: dict[str, tuple[torch.nn.Module, Path, Path]] = {}

    def export(name: str) -> tuple[torch.nn.Module, Path, Path]:
        if name not in made:
            spec = get_restorer(name)
            net = deployment_module(spec, tiny_weights_of(name))
            made[name] = export_restorer(net, name, spec.fp32_modules)
        return made[name]

    return export


# --------------------------------------------------------------------------- the entry


@pytest.mark.parametrize("name", NAMES)
def test_the_entry_names_what_exists(name):
    spec = REGISTRY[name]
    assert spec.default_config.is_file(), f"{name}: missing {spec.default_config}"
    assert callable(resolve(spec.network)), f"{name}: {spec.network} is not a class"
    assert isinstance(resolve(spec.recipe), Recipe), f"{name}: {spec.recipe} is not a Recipe"
    if spec.detail_stage is not None:
        assert callable(resolve(spec.detail_stage))
    assert all(figure.restorer == name for figure in spec.paper_figures)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_load_finite_fp16_with_their_metadata(name):
    spec = REGISTRY[name]
    tensors, _ = read_weights(spec.weights)
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats), "shipped as FP16"
    assert all(torch.isfinite(t).all() for t in floats), f"{name}: non-finite weights"
    assert spec.weights.stat().st_size < 20 * 2**20, "a few MB, not more"
    net = load_restorer(spec)
    assert not net.training
    assert net.input_multiple == spec.input_multiple, "the entry states the shipped multiple"
    metadata = weights_metadata(spec.weights)
    for key in ("network_config", "train_config", "data_recipe"):
        assert key in metadata, f"{name}: shipped weights lack {key!r} in their metadata"
    # Supervised recipes validate on PSNR; an unsupervised one (smooth) on its own score.
    if driver.recipe_of(spec).validation is pair_validation:
        assert "val_psnr" in metadata, f"{name}: shipped weights lack 'val_psnr'"
    else:
        assert any(key.startswith("val_") for key in metadata), f"{name}: no validation score"


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("name", NAMES)
def test_forward_keeps_odd_sizes_through_padding(name, tiny_weights_of):
    net = load_restorer(get_restorer(name), tiny_weights_of(name))
    generator = torch.Generator().manual_seed(0)
    for height, width in ((37, 53), (24, 90)):
        image = torch.rand(1, 3, height, width, generator=generator)
        with torch.no_grad():
            output = run_padded(net, image)
        assert output.shape == image.shape, f"{name}: {tuple(output.shape)} at {height}x{width}"
        assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_gradients(name):
    net = tiny_network(name).train()
    multiple = net.input_multiple
    # dim and hazy: lowlight's exposure gate passes a well-exposed frame through and
    # desmoke's density gate a frame with a dark darkest channel, both with no gradient;
    # a white spot, as dereflect's whiteness gate passes a frame without one
    image = 0.2 + 0.1 * torch.rand(2, 3, padded(32, multiple), padded(48, multiple))
    image[..., 8:12, 8:12] = 0.95
    net(image).square().mean().backward()
    gradients = [p.grad for p in net.parameters() if p.grad is not None]
    assert gradients, f"{name}: no parameter got a gradient"
    assert all(torch.isfinite(g).all() for g in gradients), f"{name}: non-finite gradient"
    assert sum(float(g.abs().sum()) for g in gradients) > 0, f"{name}: all gradients are zero"


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", NAMES)
def test_onnx_has_dynamic_sides_and_matches_pytorch_at_two_sizes(name, exported):
    from smokeclear.export.onnx_export import check_parity

    module, path, _ = exported(name)
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    multiple = module.input_multiple
    assert all(isinstance(d, str) for d in dims[2:]), f"H, W dynamic: {dims}"
    if multiple > 1:
        assert all(str(multiple) in d for d in dims[2:]), f"multiples of {multiple}: {dims}"
    assert {p.key: p.value for p in model.metadata_props}["input_multiple"] == str(multiple)
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(1, 3, padded(37, multiple), padded(53, multiple), generator=generator),
        torch.rand(1, 3, padded(24, multiple), padded(90, multiple), generator=generator),
    ]
    report = check_parity(module, path, inputs)
    assert report.inputs == 2
    assert report.max_abs_error < 1e-4, str(report)


@pytest.mark.parametrize("name", NAMES)
def test_fp16_runs_convolutions_in_fp16_keeps_io_fp32_and_stays_close(name, exported, fp32_by_op):
    from smokeclear.export.fp16 import compare_models, parity_inputs

    module, fp32, fp16 = exported(name)
    assert False in fp32_by_op(fp32)["Conv"], "convolutions run in FP16"
    graph = onnx.load(str(fp16)).graph
    single = onnx.TensorProto.FLOAT
    assert graph.input[0].type.tensor_type.elem_type == single, "FP32 input kept"
    assert graph.output[0].type.tensor_type.elem_type == single, "FP32 output kept"
    report = compare_models(fp32, fp16, parity_inputs(max(module.input_multiple, 8)))
    assert report.psnr_db > 50, str(report)


# --------------------------------------------------------------------------- train and run

PAIRED = [name for name in NAMES if REGISTRY[name].pairs is not None]


@pytest.mark.parametrize("name", PAIRED)
def test_real_pairs_load_from_every_accepted_layout(name, tmp_path, write_pairs):
    spec = get_restorer(name)
    layout = spec.pairs
    first = (layout.degraded[0], layout.clean[0])
    pairs = driver.real_pairs(spec, write_pairs(tmp_path / "pairs", first, size=(40, 32)))
    assert [file for file, _, _ in pairs] == ["a.png", "b.png"]
    file, degraded, clean = pairs[0]
    assert degraded.shape == clean.shape == (32, 40, 3) and degraded.dtype == np.float32
    assert degraded.mean() < clean.mean(), "(name, degraded, clean): degraded comes first"
    written = cv2.imread(str(tmp_path / "pairs" / first[0] / file))
    expected = cv2.cvtColor(written, cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(degraded, expected / 255.0, atol=1e-6)
    alternatives = [(d, layout.clean[0]) for d in layout.degraded[1:]]
    alternatives += [(layout.degraded[0], c) for c in layout.clean[1:]]
    for index, folders in enumerate(alternatives):
        assert len(driver.real_pairs(spec, write_pairs(tmp_path / f"alt{index}", folders))) == 2


@pytest.mark.parametrize("name", PAIRED)
def test_bad_real_pair_folders_say_what_is_wrong(name, tmp_path, write_pairs):
    spec = get_restorer(name)
    folders = (spec.pairs.degraded[0], spec.pairs.clean[0])
    with pytest.raises(UserError, match="is not a folder"):
        driver.real_pairs(spec, tmp_path / "missing")
    (tmp_path / "half" / folders[0]).mkdir(parents=True)
    with pytest.raises(UserError, match=f"no {folders[1]}/ folder"):
        driver.real_pairs(spec, tmp_path / "half")
    write_pairs(tmp_path / "other", folders, names=("a.png",))
    (tmp_path / "other" / folders[1] / "a.png").rename(tmp_path / "other" / folders[1] / "z.png")
    with pytest.raises(UserError, match="no matching file names"):
        driver.real_pairs(spec, tmp_path / "other")
    write_pairs(tmp_path / "sizes", folders, names=("a.png",))
    cv2.imwrite(str(tmp_path / "sizes" / folders[1] / "a.png"), np.zeros((24, 40, 3), np.uint8))
    with pytest.raises(UserError, match="differ in size"):
        driver.real_pairs(spec, tmp_path / "sizes")


@pytest.mark.parametrize("name", NAMES)
def test_validation_pairs_do_not_depend_on_the_training_seed(name):
    spec = get_restorer(name)
    recipe = driver.recipe_of(spec)
    config = from_mapping(recipe.train_config, dict(recipe.tiny_train), name)
    first = driver.validation_batch(spec, dataclasses.replace(config, seed=0), [])
    second = driver.validation_batch(spec, dataclasses.replace(config, seed=5), [])
    np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_writes_fp16_weights_that_say_how_they_were_made(
    name, tmp_path, caplog, write_pairs
):
    spec = get_restorer(name)
    recipe = driver.recipe_of(spec)
    config = write_tiny_config(recipe, tmp_path / "tiny.yaml")
    arguments = ["train", name, "--out", str(tmp_path / "run"), "--config", str(config)]
    if spec.pairs is not None:
        layout = (spec.pairs.degraded[0], spec.pairs.clean[0])
        arguments += ["--pairs-dir", str(write_pairs(tmp_path / "pairs", layout))]
    assert main(arguments) == 0
    weights = tmp_path / "run" / f"{name}.safetensors"
    tensors, _ = read_weights(weights)
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    metadata = weights_metadata(weights)
    for key, value in recipe.tiny_network.items():
        assert metadata["network_config"][key] == value, f"network_config.{key}"
    for key, value in recipe.tiny_train.items():
        assert metadata["train_config"][key] == value, f"train_config.{key}"
    assert metadata["epochs"] == 1
    assert np.isfinite([v for k, v in metadata.items() if k.startswith("val_")]).all()
    if spec.pairs is not None:
        assert metadata["data_recipe"]["real_pairs"] == 2, "the pairs folder was read"
    if recipe.perceptual is not None:
        assert "PERCEPTUAL LOSS OFF" in caplog.text
        assert metadata["loss"][recipe.perceptual.key] == "off"


@pytest.mark.parametrize("name", NAMES)
def test_flags_a_recipe_has_no_use_for_are_refused(name, tmp_path, capsys):
    spec = get_restorer(name)
    out = str(tmp_path / "run")
    if spec.pairs is None:
        assert main(["train", name, "--out", out, "--pairs-dir", str(tmp_path)]) == 2
        assert f"{name} does not take --pairs-dir" in capsys.readouterr().err
    if driver.recipe_of(spec).perceptual is None:
        assert main(["train", name, "--out", out, "--vgg-weights", str(tmp_path)]) == 2
        assert f"{name} does not take --vgg-weights" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_the_entry_names_the_vgg_its_recipe_takes(name):
    perceptual = driver.recipe_of(get_restorer(name)).perceptual
    assert get_restorer(name).perceptual_vgg == (perceptual.arch if perceptual else None)


@pytest.mark.parametrize("name", NAMES)
def test_a_short_live_run_through_the_cli(name, tiny_weights_of, short_live_argv, capsys):
    code = main(short_live_argv(5, "--restorer", name, "--weights", str(tiny_weights_of(name))))
    assert code == 0, capsys.readouterr().err


@functools.cache
def guard_frames(height: int, width: int) -> list[np.ndarray]:
    """Synthetic smoky frames, crops of the docs' example images and, where this machine
    has them, a few real photos: what the output guard must never reject."""
    from smokeclear.stream.sources.synthetic import SyntheticSource

    frames = []
    for seed in (0, 7):
        source = SyntheticSource(width, height, seed=seed, live=False, max_frames=1)
        source.open()
        frames.append(source.read())
    docs = Path(__file__).resolve().parents[1] / "docs"
    photos = Path("/work/shared/data/clean_photos")
    images = sorted(docs.glob("*-examples.png"))[:2] + sorted(photos.glob("*.png"))[:2]
    for path in images:
        image = cv2.imread(str(path))
        crop = image[: image.shape[0] // 2, : image.shape[1] // 3]
        frames.append(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))
    return frames


@pytest.mark.parametrize("name", NAMES)
def test_the_output_guard_passes_every_shipped_restorer_on_real_and_synthetic_frames(name):
    from smokeclear.engines.output_guard import guarded_download, host_range, judge
    from smokeclear.engines.torch_engine import TorchEngine
    from smokeclear.runtime import EngineRequest, build_chain

    height, width = 37, 53  # odd: padded to the input multiple and cropped back
    engine = TorchEngine(lambda: build_chain(EngineRequest((get_restorer(name),), "torch")))
    engine.start(height, width)
    for index, frame in enumerate(guard_frames(height, width)):
        tensor = engine.infer(engine.upload(frame))
        output, problem = guarded_download(engine, tensor, frame, height, width)
        assert problem is None, f"{name}: frame {index} rejected on the device as {problem}"
        host = judge(host_range(output, height, width), host_range(frame, height, width))
        assert host is None, f"{name}: frame {index} rejected on the host as {host}"
