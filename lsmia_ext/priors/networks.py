"""Our StyleGAN-style prior: mapping MLP z -> w, AdaIN-styled upsampling synthesis w -> image, and a
convolutional discriminator. Sized for small images (8..64 px, grey or RGB) so it trains on 2 CPU cores.

Why this shape: the attacks need a latent space with a mapping network and a running w_avg (PPA
searches in w and truncates toward w_avg), and per-layer styles so a w controls the whole image.
AdaIN (instance norm, then a per-channel scale and shift predicted from w) gives that at a fraction
of the cost of StyleGAN2's modulated convolutions, which matters on CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .interface import Generator


def resolution_schedule(image_size: int) -> tuple[int, int]:
    """(base, n_up): image_size = base * 2**n_up with a 4..7 px base and at least one upsampling."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 of the form b * 2**k with b in 4..7; got {image_size!r}")
    base, n_up = image_size, 0
    while base > 7 and base % 2 == 0:
        base, n_up = base // 2, n_up + 1
    if base < 4 or base > 7 or n_up == 0:
        raise ValueError(f"image_size {image_size} is not b * 2**k with b in 4..7 and k >= 1 "
                         f"(allowed e.g. 8, 14, 16, 28, 32, 56, 64, 128)")
    return base, n_up


def _widths(n_levels: int, channels_max: int, channels_min: int) -> list[int]:
    """Channel count per resolution level, coarsest first: halves each level, never below the floor."""
    return [max(channels_min, channels_max >> i) for i in range(n_levels)]


class MappingNetwork(nn.Module):
    """z -> w: pixel-normalised z through an MLP (disentangles the latent space, as in StyleGAN)."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.net(z)


class StyledConv(nn.Module):
    """3x3 conv, LeakyReLU, instance norm, then AdaIN: x * (1 + scale(w)) + shift(w)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.style = nn.Linear(w_dim, 2 * out_ch)
        with torch.no_grad():  # start near plain instance norm (scale 1, shift 0); styles grow in training
            self.style.weight.mul_(0.2)
            self.style.bias.zero_()

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # resize-conv: no checkerboard, cheap backward
        x = F.instance_norm(F.leaky_relu(self.conv(x), 0.2))
        scale, shift = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class SynthesisNetwork(nn.Module):
    """Learned constant at the base resolution, one styled conv there, `convs_per_level` per upsampling
    level (the first of them upsamples); one w per styled conv."""

    def __init__(self, w_dim: int, image_size: int, channels: int, channels_max: int, channels_min: int,
                 convs_per_level: int):
        super().__init__()
        base, n_up = resolution_schedule(image_size)
        widths = _widths(n_up + 1, channels_max, channels_min)
        self.const = nn.Parameter(torch.randn(1, widths[0], base, base))
        layers = [StyledConv(widths[0], widths[0], w_dim, upsample=False)]
        for lvl in range(1, n_up + 1):
            layers.append(StyledConv(widths[lvl - 1], widths[lvl], w_dim, upsample=True))
            layers += [StyledConv(widths[lvl], widths[lvl], w_dim, upsample=False)
                       for _ in range(convs_per_level - 1)]
        self.layers = nn.ModuleList(layers)
        self.to_image = nn.Conv2d(widths[-1], channels, 1)

    @property
    def num_ws(self) -> int:
        return len(self.layers)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i])
        # Linear output as StyleGAN2's (internal [-1, 1] mapped to [0, 1]); no sigmoid: on the black
        # backgrounds of these images a sigmoid saturates and an attack could not move a silhouette.
        return 0.5 + 0.5 * self.to_image(x)


class StyleGenerator(Generator):
    """Our generator prior (see module docstring). w_avg is tracked during training (EMA of w)."""

    def __init__(self, image_size: int, channels: int, z_dim: int = 64, w_dim: int = 64,
                 mapping_layers: int = 3, channels_max: int = 128, channels_min: int = 32,
                 convs_per_level: int = 2):
        super().__init__()
        for name, value in dict(channels=channels, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers,
                                channels_max=channels_max, channels_min=channels_min,
                                convs_per_level=convs_per_level).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StyleGenerator: {name} must be a positive int; got {value!r}")
        self.arch = dict(image_size=image_size, channels=channels, z_dim=z_dim, w_dim=w_dim,
                         mapping_layers=mapping_layers, channels_max=channels_max, channels_min=channels_min,
                         convs_per_level=convs_per_level)
        self.z_dim, self.w_dim, self.image_size, self.channels = z_dim, w_dim, image_size, channels
        self.mapping_net = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.synthesis_net = SynthesisNetwork(w_dim, image_size, channels, channels_max, channels_min,
                                              convs_per_level)
        self.num_ws = self.synthesis_net.num_ws
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        return self.mapping_net(z)

    def _synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        return self.synthesis_net(ws)

    @torch.no_grad()
    def track_w_avg(self, w: torch.Tensor, beta: float) -> None:
        """Running mean of untruncated w (B, w_dim), the centre the truncation trick pulls toward."""
        self.w_avg.lerp_(w.detach().mean(dim=0), 1.0 - beta)


class Discriminator(nn.Module):
    """Realness logit (B,) for [0, 1] images: strided convs down to the base resolution
    (4..7 px), minibatch-stddev, linear.

    Minibatch standard deviation (as in ProGAN/StyleGAN) lets the critic see sample diversity, which
    counters mode collapse at almost no cost.
    """

    def __init__(self, image_size: int, channels: int, channels_max: int = 128, channels_min: int = 32,
                 mbstd_group: int = 4):
        super().__init__()
        _, n_up = resolution_schedule(image_size)
        self.arch = dict(image_size=image_size, channels=channels, channels_max=channels_max,
                         channels_min=channels_min, mbstd_group=mbstd_group)
        self.image_size, self.channels, self.mbstd_group = image_size, channels, mbstd_group
        widths = list(reversed(_widths(n_up + 1, channels_max, channels_min)))  # finest first
        blocks: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        size, in_ch = image_size, widths[0]
        for lvl in range(1, len(widths)):
            blocks += [nn.Conv2d(in_ch, widths[lvl], 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            size, in_ch = (size + 1) // 2, widths[lvl]
        self.blocks = nn.Sequential(*blocks)
        self.final_conv = nn.Conv2d(in_ch + 1, in_ch, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * size * size, in_ch), nn.LeakyReLU(0.2),
                                  nn.Linear(in_ch, 1))

    def _minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.mbstd_group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, b // g, c, h, w)
        var = (y - y.mean(dim=0)).square().mean(dim=0)  # aten::var is several times slower on CPU
        std = (var + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (b // g,)
        std = std.repeat(g)[:, None, None, None].expand(b, 1, h, w)
        return torch.cat([x, std], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"discriminator expects images (B, {', '.join(map(str, expected))}); "
                             f"got {tuple(images.shape)}")
        x = self.blocks(images * 2 - 1)
        x = F.leaky_relu(self.final_conv(self._minibatch_std(x)), 0.2)
        return self.head(x).squeeze(1)
