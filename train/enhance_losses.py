"""The enhance (DPED) paper's losses, Sec. 3.1: colour, texture, content and total variation.

``L = L_content + 0.4 L_texture + 0.1 L_color + 400 L_tv`` (Eq. 8) in the paper;
the recipe takes the weights from its config. Images are ``(B, 3, H, W)`` RGB in
[0, 1]. Where the paper is open, the public TensorFlow code (``aiff22/DPED``)
decides:

- colour loss (Eq. 2-4): both images blurred by the public code's 21x21 kernel
  (``gauss_kernel(21, 3)``: the square root of the outer product of a Gaussian of
  standard deviation 3 px sampled over pixel intervals, which is a Gaussian of
  standard deviation ``3 sqrt(2)`` px, truncated at 21 px; the paper's Eq. 4 reads as
  variance 3, with ``A = 0.053 = 1 / (6 pi)`` normalising that), zero padding, then
  the squared Euclidean norm per image (Eq. 2), averaged over the batch. The public
  code halves that norm;
- texture loss (Eq. 5): a discriminator on grayscale images (BT.601 luma, as
  ``tf.image.rgb_to_grayscale``) minimises the cross-entropy of real and fake, the
  generator ``-log D(fake)`` averaged over the batch
  (:func:`smokeclear.train.losses.generator_loss`; the public code sums over its
  batch of 50 and uses the saturating ``log(1 - D(fake))``);
- content loss (Eq. 6): the mean squared difference of VGG-19 ``relu5_4`` features
  (the public code's ``2 l2_loss / size``);
- total variation (Eq. 7): the mean squared horizontal plus vertical differences
  (the public code further divides by its batch size).

Ours, for training without VGG weights: a pixel loss, the colour loss without the
blur (``||X - Y||^2`` per image), so the two weigh on the same scale; and its log
(minus PSNR per image, floored), so that good frames weigh as much as bad ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.nets.enhance import NORM_EPS

#: The colour loss's kernel: public code ``gauss_kernel(kernlen=21, nsig=3)``.
BLUR_SIZE = 21
BLUR_NSIG = 3.0
#: ``tf.image.rgb_to_grayscale`` weights.
LUMA = (0.2989, 0.5870, 0.1140)


def blur_kernel() -> torch.Tensor:
    """The public code's ``(21, 21)`` colour-loss kernel, normalised to sum 1.

    A standard normal's probability mass over 21 equal intervals spanning
    ``+-(nsig + half an interval)`` (a Gaussian of 3 px standard deviation, sampled
    per pixel), then the square root of the outer product: a Gaussian of
    ``3 sqrt(2)`` px standard deviation.
    """
    interval = (2 * BLUR_NSIG + 1.0) / BLUR_SIZE
    edges = torch.linspace(
        -BLUR_NSIG - interval / 2, BLUR_NSIG + interval / 2, BLUR_SIZE + 1, dtype=torch.float64
    )
    profile = torch.diff(torch.special.ndtr(edges))
    kernel = torch.sqrt(torch.outer(profile, profile))
    return (kernel / kernel.sum()).float()


def blur(image: torch.Tensor) -> torch.Tensor:
    """The colour loss's blur, per channel, same size (zero padding, as ``SAME`` in TF)."""
    channels = image.shape[1]
    kernel = blur_kernel().to(image).expand(channels, 1, BLUR_SIZE, BLUR_SIZE)
    return F.conv2d(image, kernel, padding=BLUR_SIZE // 2, groups=channels)


def squared_norm(difference: torch.Tensor) -> torch.Tensor:
    """``||x||^2`` of each image in the batch, averaged over the batch."""
    return difference.pow(2).flatten(1).sum(dim=1).mean()


def color_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``||blur(X) - blur(Y)||^2`` per image (brightness, contrast, colour)."""
    return squared_norm(blur(output) - blur(target))


def pixel_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Ours: ``||X - Y||^2`` per image, the colour loss without the blur."""
    return squared_norm(output - target)


def log_mse_loss(output: torch.Tensor, target: torch.Tensor, floor_db: float) -> torch.Tensor:
    """Ours: ``10 log10(MSE + 10^(-floor_db / 10))`` per image, averaged: minus each image's
    PSNR, floored at ``floor_db``.

    A squared norm lets the worst frames of a batch set the direction: a good frame
    whose target is itself weighs nothing next to a heavily faulted one, so the
    network learns the average correction and applies it everywhere. In the log,
    every image's relative error counts alike, which is also what mean validation
    PSNR scores; the floor keeps a near-perfect image from dominating.
    """
    mse = (output - target).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(mse + 10 ** (-floor_db / 10))).mean()


def tv_loss(output: torch.Tensor) -> torch.Tensor:
    """Eq. 7: mean squared horizontal difference plus mean squared vertical difference."""
    dx = output[..., :, 1:] - output[..., :, :-1]
    dy = output[..., 1:, :] - output[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def content_loss(features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Eq. 6: mean squared difference of one VGG layer's activations (``relu5_4``)."""
    return F.mse_loss(features, target_features)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 1, H, W)`` luma, as the texture discriminator sees it."""
    weights = image.new_tensor(LUMA).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


class TextureDiscriminator(nn.Module):
    """The paper's discriminator on grayscale patches (Sec. 3.2; public code's ``adversarial``).

    Five convs with LeakyReLU (0.2), then a normalisation after all but the first:
    the paper says batch norm, the public code has instance norm (a learned scale
    and shift, ``eps`` 1e-3), which is used here, so a patch is judged the same
    whatever else is in the batch and in training and eval mode alike. 11x11
    stride 4, 5x5 stride 2, 3x3, 3x3 and 3x3 stride 2, ``(1, 2.67, 4, 4, 2.67) x width``
    channels (48, 128, 192, 192, 128 at the paper's width 48); a 1024-unit fully
    connected layer with LeakyReLU and one logit. The fully connected layer fixes
    the patch size.

    Shape:
        ``(B, 3, P, P)`` RGB in [0, 1] -> ``(B,)`` logits (real = target camera).
    """

    def __init__(self, patch_size: int = 100, width: int = 48) -> None:
        super().__init__()
        if patch_size < 16:
            raise ValueError(f"patch_size must be >= 16, got {patch_size}")
        channels = [width, width * 8 // 3, width * 4, width * 4, width * 8 // 3]
        specs = [(11, 4), (5, 2), (3, 1), (3, 1), (3, 2)]
        layers: list[nn.Module] = []
        in_channels = 1
        for index, ((kernel, stride), out_channels) in enumerate(zip(specs, channels, strict=True)):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if index > 0:
                layers.append(nn.InstanceNorm2d(out_channels, eps=NORM_EPS, affine=True))
            in_channels = out_channels
        self.patch_size = patch_size
        self.features = nn.Sequential(*layers)
        side = patch_size
        for kernel, stride in specs:
            side = (side + 2 * (kernel // 2) - kernel) // stride + 1
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * side * side, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"the texture discriminator takes {self.patch_size}x{self.patch_size} "
                f"patches, got {tuple(image.shape[-2:])}"
            )
        return self.head(self.features(grayscale(image) * 2.0 - 1.0)).squeeze(1)
