"""PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks"): an explicit, tractable density.

log p(x) = sum_i log p(x_i | x_<i) over pixels in raster order (channels inner: all channels of a pixel,
first to last, before the next pixel). Masked convolutions keep the order: the first layer (mask A) lets a
position see only earlier pixels, later layers (mask B) also the same position's own features, so the
network's output at pixel i depends on x_<i alone. Every conditional is a Bernoulli on binary pixels, so one
forward pass gives the exact log-likelihood in nats (published: 81.30 on statically binarized MNIST), and
sampling is ancestral, one pixel (and channel) at a time.

Sampling needs one pixel's logits at a time. It runs the network on the window that can reach that pixel
(its receptive field: `reach` rows above, `reach` columns either side) with unpadded convolutions that keep
only each kernel's visible rows, so every layer shrinks toward the pixel; positions outside the image are
zeroed before each convolution, exactly as the full pass pads them. The logits equal the full pass's (a
test checks every pixel) at a small fraction of its cost.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError, DataError
from vaelab.objectives.registry import Step, register_objective

DEFAULTS = {"channels": 64, "blocks": 6, "first_kernel": 7}


def channel_groups(n: int, data_channels: int) -> torch.Tensor:
    """Which data channel each of `n` feature channels belongs to (contiguous blocks, n >= data_channels).

    Args:
        n: feature channels.
        data_channels: the image's channels.
    """
    return torch.arange(n) * data_channels // n


def causal_mask(out_ch: int, in_ch: int, kernel: int, mask_type: str, data_channels: int = 1) -> torch.Tensor:
    """The [out, in, k, k] 0/1 mask of a masked convolution.

    Rows above the centre and the centre row left of the centre are visible; at the centre itself, a feature
    of data channel c sees input features of channels < c (type A) or <= c (type B).

    Args:
        out_ch: output feature channels.
        in_ch: input feature channels.
        kernel: the (odd) kernel size.
        mask_type: "A" (the first layer: a pixel does not see itself) or "B" (later layers).
        data_channels: the image's channels.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask type must be 'A' or 'B', got {mask_type!r}")
    c = kernel // 2
    mask = torch.ones(out_ch, in_ch, kernel, kernel)
    mask[:, :, c, c + 1 :] = 0
    mask[:, :, c + 1 :, :] = 0
    g_out = channel_groups(out_ch, data_channels)[:, None]
    g_in = channel_groups(in_ch, data_channels)[None, :]
    centre = g_out > g_in if mask_type == "A" else g_out >= g_in
    mask[:, :, c, c] = centre.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution whose weights are multiplied by a causal mask on every call."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, mask_type: str, data_channels: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, padding=kernel // 2)
        self.register_buffer(
            "mask", causal_mask(out_ch, in_ch, kernel, mask_type, data_channels), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def valid(self, h: torch.Tensor, origin: tuple[int, int], image: tuple[int, int]) -> Window:
        """The unpadded convolution of a window whose top-left pixel is `origin` in an image of size `image`.

        Positions outside the image are zeroed first (the full pass's padding); the kernel's rows below its
        centre are masked anyway and dropped, so the output starts `c` rows and columns further in.

        Args:
            h: the window's activations [B, C, h, w].
            origin: the image coordinates of its top-left position.
            image: the image's size (H, W).
        """
        r0, c0 = origin
        rows = torch.arange(h.shape[-2], device=h.device) + r0
        cols = torch.arange(h.shape[-1], device=h.device) + c0
        inside = ((rows >= 0) & (rows < image[0]))[:, None] & ((cols >= 0) & (cols < image[1]))[None, :]
        c = self.kernel_size[0] // 2
        w = (self.weight * self.mask)[:, :, : c + 1, :]
        return Window(F.conv2d(h * inside, w, self.bias), (r0 + c, c0 + c))


class Window(NamedTuple):
    """Activations of a window of the image and the image coordinates of its top-left position."""

    h: torch.Tensor
    origin: tuple[int, int]


def run_valid(layers: nn.Sequential, win: Window, image: tuple[int, int]) -> Window:
    """A sequence of ReLUs and masked convolutions (or blocks) applied to a window without padding.

    Args:
        layers: elementwise layers and MaskedConv2d / ResidualBlock layers, in order.
        win: the window's activations and its top-left position in the image.
        image: the image's size (H, W).
    """
    for layer in layers:
        win = (
            layer.valid(win.h, win.origin, image)
            if isinstance(layer, (MaskedConv2d, ResidualBlock))
            else Window(layer(win.h), win.origin)
        )
    return win


class ResidualBlock(nn.Module):
    """The PixelCNN residual block: 2h -> 1x1 -> h -> 3x3 (mask B) -> h -> 1x1 -> 2h, added to its input."""

    def __init__(self, channels: int, data_channels: int) -> None:
        super().__init__()
        h = channels // 2
        self.net = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(channels, h, 1, "B", data_channels),
            nn.ReLU(),
            MaskedConv2d(h, h, 3, "B", data_channels),
            nn.ReLU(),
            MaskedConv2d(h, channels, 1, "B", data_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)

    def valid(self, h: torch.Tensor, origin: tuple[int, int], image: tuple[int, int]) -> Window:
        """The block on a window: the residual is cropped to where the (shrunken) branch lands.

        Args:
            h: the window's activations [B, C, h, w].
            origin: the image coordinates of its top-left position.
            image: the image's size (H, W).
        """
        out = run_valid(self.net, Window(h, origin), image)
        dr, dc = out.origin[0] - origin[0], out.origin[1] - origin[1]
        res = h[:, :, dr : dr + out.h.shape[-2], dc : dc + out.h.shape[-1]]
        return Window(res + out.h, out.origin)


def _settings(cfg: ModelConfig) -> dict[str, int]:
    unknown = sorted(set(cfg.extra) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"model.extra has unknown key(s) {', '.join(unknown)} for pixelcnn; it takes: {', '.join(DEFAULTS)}"
        )
    s = {**DEFAULTS, **cfg.extra}
    for k, v in s.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"model.extra.{k} must be a positive integer, got {v!r}")
    if s["first_kernel"] % 2 == 0:
        raise ConfigError(f"model.extra.first_kernel must be odd, got {s['first_kernel']}")
    return s


class PixelCNN(nn.Module):
    """Masked-convolution autoregressive model of binary images, with the vaelab evaluation protocol.

    `exact_log_px(x)` is log p(x) by the chain rule; `log_importance_weights(x, K)` repeats it K times (an
    importance sampler of a model without latents returns the exact value); `generate(n, generator)`
    draws images ancestrally. `exact_likelihood = True` tells `vaelab eval` to label it so and draw nothing.
    """

    exact_likelihood = True

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if cfg.likelihood != "bernoulli":
            raise ConfigError(
                f"pixelcnn models binary pixels: model.likelihood must be 'bernoulli', got '{cfg.likelihood}'"
            )
        s = _settings(cfg)
        self.shape = tuple(shape)
        c = self.shape[0]
        if s["channels"] < 2 * c:
            raise ConfigError(f"model.extra.channels must be at least {2 * c} for {c} data channel(s)")
        self.first = MaskedConv2d(c, s["channels"], s["first_kernel"], "A", c)
        self.blocks = nn.Sequential(*(ResidualBlock(s["channels"], c) for _ in range(s["blocks"])))
        self.head = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(s["channels"], s["channels"], 1, "B", c),
            nn.ReLU(),
            MaskedConv2d(s["channels"], c, 1, "B", c),
        )
        # How far (in rows or columns) an output can see: the sum of the kernels' radii.
        self.reach = s["first_kernel"] // 2 + s["blocks"]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logit of p(x_i = 1 | x_<i) at every pixel and channel, [B, C, H, W].

        Args:
            x: binary images [B, C, H, W].
        """
        return self.head(self.blocks(self.first(x)))

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per image [B]: the sum of the Bernoulli log-probabilities of every conditional.

        Args:
            x: binary images [B, C, H, W] (anything else is a DataError).
        """
        if not bool(((x == 0) | (x == 1)).all()):
            raise DataError(
                "pixelcnn needs binary pixels (0 or 1): binarize the data (data.binarize dynamic or static)"
            )
        return F.logsigmoid(self.logits(x) * (2.0 * x - 1.0)).flatten(1).sum(1)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B]: the exact log p(x) for every k (no latent variable, so no sampling and no variance).

        Args:
            x: binary images [B, C, H, W].
            num_samples: K, how many copies.
            generator: unused (nothing is drawn).
        """
        return self.exact_log_px(x).unsqueeze(0).expand(num_samples, -1)

    def pixel_logits(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The logits [B, C] at pixel (i, j) alone, from the window of x that can reach it.

        Args:
            x: the images drawn so far [B, C, H, W].
            i: the pixel's row.
            j: the pixel's column.
        """
        r, image = self.reach, tuple(x.shape[-2:])
        padded = F.pad(x, (r, r, r, 0))
        win = Window(padded[:, :, i : i + r + 1, j : j + 2 * r + 1], (i - r, j - r))
        win = run_valid(self.head, run_valid(self.blocks, self.first.valid(*win, image), image), image)
        return win.h[:, :, 0, 0]

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images [n, C, H, W] of 0/1 pixels, drawn ancestrally in raster order (channels inner).

        Args:
            n: how many images.
            generator: the random stream of the pixels.
        """
        c, h, w = self.shape
        dev = self.first.weight.device
        x = torch.zeros(n, c, h, w, device=dev)
        u = torch.rand(h, w, c, n, generator=generator, device=dev)
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    p = torch.sigmoid(self.pixel_logits(x, i, j)[:, k])
                    x[:, k, i, j] = (u[i, j, k] < p).float()
        return x


@register_objective("exact-nll")
def exact_nll_objective(
    model: nn.Module, x: torch.Tensor, cfg: ObjectiveConfig, beta: float, generator: torch.Generator | None
) -> Step:
    """Maximum likelihood: minimise -log p(x), exact for an autoregressive model; reports log p(x) per datum.

    Args:
        model: a model with an exact log-likelihood (`exact_log_px`).
        x: the batch [B, C, H, W].
        cfg: the objective's settings (none apply).
        beta: unused (no KL term).
        generator: unused (nothing is drawn).
    """
    log_px = model.exact_log_px(x)
    return Step(-log_px.mean(), {"log_px": log_px})
