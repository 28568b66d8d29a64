"""Generator priors: the Generator interface every attack uses, our StyleGAN-style prior trained on
public data only, and adapters for user-supplied generators.

    from lsmia_ext.priors import load_generator
    g = load_generator("runs/prior")                 # or a YAML/dict spec, see loading.py
    ws = g.mapping(torch.randn(8, g.z_dim), truncation_psi=0.5)   # (8, g.num_ws, g.w_dim)
    images = g.synthesis(ws)                         # [0, 1], (8, g.channels, g.image_size, g.image_size)
"""
from .config import FidConfig, GanTrainConfig, NetworkConfig, PriorConfig
from .interface import Generator, truncate
from .loading import GENERATOR_KINDS, generator_from_spec, load_discriminator, load_generator
from .module_adapter import ModuleGenerator, ModuleSpec
from .networks import Discriminator, StyleGenerator, resolution_schedule
from .stylegan2_adapter import StyleGan2AdaGenerator, StyleGan2AdaSpec
from .train import public_images, train_prior

__all__ = [
    "Discriminator", "FidConfig", "GENERATOR_KINDS", "GanTrainConfig", "Generator", "ModuleGenerator",
    "ModuleSpec", "NetworkConfig", "PriorConfig", "StyleGan2AdaGenerator", "StyleGan2AdaSpec", "StyleGenerator",
    "generator_from_spec", "load_discriminator", "load_generator", "public_images", "resolution_schedule",
    "train_prior", "truncate",
]
