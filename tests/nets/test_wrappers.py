import pytest
import torch

from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet
from smokeclear.nets.wrappers import RestorerChain, WorkScale, run_padded


class Affine(torch.nn.Module):
    input_multiple = 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 0.8 * image + 0.1


def test_work_scale_returns_full_size_and_multiplies_the_multiple():
    wrapped = WorkScale(DesmokeNet(DesmokeConfig(width=4, max_channels=8)).eval(), 0.5)
    assert wrapped.input_multiple == 64
    with torch.no_grad():
        assert wrapped(torch.rand(1, 3, 64, 128)).shape == (1, 3, 64, 128)


def test_work_scale_keeps_detail_for_a_locally_affine_restorer():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 64)
    restored = WorkScale(Affine(), 0.5)(image)
    torch.testing.assert_close(restored, 0.8 * image + 0.1, atol=5e-3, rtol=0)


def test_work_scale_rejects_other_scales():
    with pytest.raises(ValueError, match=r"1, 0\.5 or 0\.25"):
        WorkScale(Affine(), 0.3)


def test_chain_applies_in_order_clamps_between_and_uses_the_lcm():
    class Times(torch.nn.Module):
        def __init__(self, factor: float, multiple: int) -> None:
            super().__init__()
            self.factor, self.input_multiple = factor, multiple

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return image * self.factor

    chain = RestorerChain([Times(4.0, 4), Times(0.5, 6)])
    assert chain.input_multiple == 12
    out = chain(torch.full((1, 3, 12, 12), 0.5))
    assert torch.allclose(out, torch.full_like(out, 0.5)), "2.0 is clamped to 1.0 before x0.5"


def test_run_padded_crops_back():
    out = run_padded(Affine(), torch.rand(1, 3, 5, 7))
    assert out.shape == (1, 3, 5, 7)
