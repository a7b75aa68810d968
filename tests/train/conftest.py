import pytest
import torch
from torch import nn


class ConvFeatures(nn.Module):
    """A stand-in for VGG features: one frozen 3 -> 4 conv (seed 1) whose output
    ("conv") or ReLU ("relu") is each of the named layers."""

    def __init__(self, *layers: str) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.requires_grad_(False)
        self.layers = layers

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.conv(image)
        return [features.relu() if layer == "relu" else features for layer in self.layers]


@pytest.fixture
def conv_features():
    """``conv_features(*layers) -> ConvFeatures``."""
    return ConvFeatures


def step_objective(objective, net: nn.Module, batch) -> torch.Tensor:
    """``objective(net, batch)``, checking that it stepped the objective's discriminator."""
    before = [p.clone() for p in objective.adversary.discriminator.parameters()]
    loss = objective(net, batch)
    after = objective.adversary.discriminator.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), (
        "the discriminator must take a step"
    )
    return loss


@pytest.fixture
def stepped():
    """``stepped(objective, net, batch) -> loss``: see :func:`step_objective`."""
    return step_objective


def restore_objective(objective, make):
    """A fresh ``make()`` loaded with ``objective``'s state, checked to hold the same
    discriminator weights."""
    other = make()
    other.load_state_dict(objective.state_dict())
    for a, b in zip(
        other.adversary.discriminator.parameters(),
        objective.adversary.discriminator.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)
    return other


@pytest.fixture
def restored():
    """``restored(objective, make) -> objective``: see :func:`restore_objective`."""
    return restore_objective
