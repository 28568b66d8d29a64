"""PriorConfig: data (public split only), generator/discriminator sizes, GAN training, FID measurement."""
from __future__ import annotations

from pydantic import Field, field_validator

from ..config import Strict, check_betas, config_hash
from ..data import DataConfig


class NetworkConfig(Strict):
    """Sizes of our StyleGAN-style generator and its discriminator (image size/channels come from data)."""

    z_dim: int = Field(default=64, ge=1)
    w_dim: int = Field(default=64, ge=1)
    mapping_layers: int = Field(default=3, ge=1)
    channels_max: int = Field(default=64, ge=1, description="width at the coarsest level; halves per level")
    channels_min: int = Field(default=16, ge=1)
    convs_per_level: int = Field(default=1, ge=1, le=4)
    d_channels_max: int = Field(default=64, ge=1)
    d_channels_min: int = Field(default=16, ge=1)


class GanTrainConfig(Strict):
    """Non-saturating GAN loss, lazy R1 on real images, EMA of the generator, Adam (StyleGAN2 recipe)."""

    steps: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=64, ge=2)
    lr_g: float = Field(default=2e-3, gt=0)
    lr_d: float = Field(default=2e-3, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = Field(default=0.2, ge=0, description="R1 weight; 0 disables the penalty")
    r1_interval: int = Field(default=8, ge=1, description="lazy R1: penalty every k discriminator steps")
    ema_half_life_images: float = Field(default=5000, gt=0, description="images until an old weight counts half")
    ema_rampup: float = Field(default=0.05, ge=0, description="EMA half-life <= rampup * images seen so far")
    w_avg_beta: float = Field(default=0.995, gt=0, lt=1)
    sample_every: int = Field(default=250, ge=1)
    checkpoint_every: int = Field(default=250, ge=1)
    num_threads: int = Field(default=0, ge=0, description="torch threads; 0 keeps torch's default")

    @field_validator("betas")
    @classmethod
    def _betas(cls, v):
        return check_betas(v, "train.betas")


class FidConfig(Strict):
    """FID of EMA samples against held-out public images, in the feature space of a small classifier
    trained here on the public train split (no pretrained Inception can be had offline)."""

    num_samples: int = Field(default=2000, ge=2)
    truncation_psi: float = 1.0
    extractor_epochs: int = Field(default=2, ge=1)
    extractor_width: int = Field(default=16, ge=4)


class PriorConfig(Strict):
    data: DataConfig
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    train: GanTrainConfig = Field(default_factory=GanTrainConfig)
    fid: FidConfig = Field(default_factory=FidConfig)
    seed: int = 0

    def hashed_dump(self) -> dict:
        """The dump its hashes cover: the private validation split never reaches the prior (public data only)."""
        data = self.model_dump(mode="json")
        data["data"].pop("val_per_class", None)
        return data

    def run_hash(self) -> str:
        return config_hash(self.hashed_dump())
