from pathlib import Path

import pytest
import torch

from smokeclear.errors import UserError
from smokeclear.train.vgg import VGGFeatures, build_features, layer_indices


def test_layer_indices_match_torchvision():
    vgg19 = layer_indices("vgg19")
    expected = {
        "conv1_1": 0,
        "relu1_2": 3,
        "pool1": 4,
        "relu2_2": 8,
        "relu3_2": 13,
        "relu4_2": 22,
        "relu5_2": 31,
        "relu5_4": 35,
    }
    assert {name: vgg19[name] for name in expected} == expected
    vgg16 = layer_indices("vgg16")
    assert (vgg16["relu3_3"], vgg16["relu4_3"]) == (15, 22)


@pytest.mark.parametrize(("arch", "length"), [("vgg19", 37), ("vgg16", 31)])
def test_build_features_has_torchvision_length(arch: str, length: int):
    assert len(build_features(arch)) == length


def vgg19_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ``features.N.weight/bias`` for every vgg19 conv, plus a classifier key."""
    torch.manual_seed(seed)
    state = {
        f"features.{key}": value for key, value in build_features("vgg19").state_dict().items()
    }
    state["classifier.0.weight"] = torch.rand(4, 4)  # not ours: must be ignored
    return state


@pytest.fixture(scope="module")
def vgg19_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("vgg")
    state = vgg19_state()
    save_file(state, str(folder / "vgg19.safetensors"))
    torch.save(state, folder / "vgg19.pth")
    return {"safetensors": folder / "vgg19.safetensors", "pth": folder / "vgg19.pth"}


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_loads_the_file_and_returns_layers_in_order(vgg19_files: dict[str, Path], suffix: str):
    extractor = VGGFeatures("vgg19", ("relu1_2", "relu3_2"), vgg19_files[suffix])
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        relu1_2, relu3_2 = extractor(image)
    assert relu1_2.shape == (2, 64, 32, 32)
    assert relu3_2.shape == (2, 256, 8, 8)

    # The file's weights, not a fresh random init, produced the activations.
    reference = build_features("vgg19")[:4]
    state = vgg19_state()
    reference.load_state_dict({key: state[f"features.{key}"] for key in reference.state_dict()})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(relu1_2, reference((image - mean) / std))

    with torch.no_grad():
        swapped = VGGFeatures("vgg19", ("relu3_2", "relu1_2"), vgg19_files[suffix])(image)
    assert [tuple(x.shape) for x in swapped] == [(2, 256, 8, 8), (2, 64, 32, 32)]
    torch.testing.assert_close(swapped[0], relu3_2)
    torch.testing.assert_close(swapped[1], relu1_2)


def test_is_frozen_but_passes_gradients_to_the_image(vgg19_files: dict[str, Path]):
    extractor = VGGFeatures("vgg19", ("relu1_2", "relu3_2"), vgg19_files["safetensors"])
    assert not any(p.requires_grad for p in extractor.parameters()), "VGG weights must be frozen"
    extractor.train()
    assert not extractor.training and not any(m.training for m in extractor.modules()), (
        ".train() must leave the extractor in eval mode"
    )
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    image.requires_grad_(True)
    sum(feature.mean() for feature in extractor(image)).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert image.grad.abs().sum() > 0, "no gradient reached the input image"


def test_missing_file(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        VGGFeatures("vgg19", ("relu1_2",), tmp_path / "absent.safetensors")


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_file_missing_a_key(tmp_path: Path, suffix: str):
    from safetensors.torch import save_file

    state = vgg19_state()
    del state["features.34.weight"]
    path = tmp_path / f"partial.{suffix}"
    if suffix == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    with pytest.raises(UserError, match="not a torchvision vgg19 state dict") as caught:
        VGGFeatures("vgg19", ("relu5_4",), path)
    assert "features.34.weight" in str(caught.value), "the message should name the missing key"


def test_file_with_wrong_shapes(tmp_path: Path):
    from safetensors.torch import save_file

    state = vgg19_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)  # a greyscale first layer
    path = tmp_path / "grey.safetensors"
    save_file(state, str(path))
    with pytest.raises(UserError, match="does not fit vgg19"):
        VGGFeatures("vgg19", ("relu1_2",), path)


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_garbage_file(tmp_path: Path, suffix: str):
    path = tmp_path / f"garbage.{suffix}"
    path.write_bytes(b"this is not a tensor file" * 10)
    with pytest.raises(UserError, match="unreadable"):
        VGGFeatures("vgg19", ("relu1_2",), path)


def test_pth_holding_a_list(tmp_path: Path):
    path = tmp_path / "list.pth"
    torch.save([1, 2], path)
    with pytest.raises(UserError, match="not a state dict"):
        VGGFeatures("vgg19", ("relu1_2",), path)


def test_unknown_layer_or_arch(vgg19_files: dict[str, Path]):
    with pytest.raises(ValueError, match="relu9_9"):
        VGGFeatures("vgg19", ("relu1_2", "relu9_9"), vgg19_files["safetensors"])
    with pytest.raises(ValueError, match="vgg11"):
        VGGFeatures("vgg11", ("relu1_2",), vgg19_files["safetensors"])
    with pytest.raises(KeyError):
        layer_indices("vgg11")
