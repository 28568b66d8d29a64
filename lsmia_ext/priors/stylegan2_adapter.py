"""Adapter (3): StyleGAN2-ADA generators from NVlabs' stylegan2-ada-pytorch network pickles (G_ema).

SECURITY: a network pickle is Python code, not data. Unpickling it runs whatever the file says, with
your user's rights. NVlabs' pickles cannot be loaded any other way (they embed the network's source
through torch_utils.persistence), so this adapter loads one only when the spec says `trust_pickle:
true`: set it only for files from a source you trust (e.g. NVlabs' own releases, checked by hash).

NVlabs' code (the `dnnlib` and `torch_utils` packages, and `legacy.py` for older pickles) must be
importable, e.g. PYTHONPATH=/path/to/stylegan2-ada-pytorch. Output [-1, 1] is mapped to [0, 1].
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Literal, Optional

import torch
from pydantic import Field

from ..config import ConfigError, Strict
from .interface import Generator, freeze

PICKLE_WARNING = ("loading a network pickle executes the code inside it; set trust_pickle: true only for a "
                  "file from a source you trust")


class StyleGan2AdaSpec(Strict):
    kind: Literal["stylegan2-ada"]
    pickle: Path
    trust_pickle: bool = False
    noise_mode: Literal["const", "random", "none"] = "const"
    class_index: Optional[int] = Field(default=None, ge=0, description="for class-conditional networks")


def _require_nvlabs_code() -> None:
    missing = []
    for name in ("dnnlib", "torch_utils"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"kind stylegan2-ada needs NVlabs' stylegan2-ada-pytorch code importable (missing: "
                          f"{', '.join(missing)}); clone github.com/NVlabs/stylegan2-ada-pytorch and add it to "
                          "PYTHONPATH")


def load_stylegan2_ada(spec: StyleGan2AdaSpec, base_dir: Path | None = None) -> "StyleGan2AdaGenerator":
    if not spec.trust_pickle:
        raise ConfigError(f"refusing to load {spec.pickle}: {PICKLE_WARNING}")
    path = spec.pickle if spec.pickle.is_absolute() or base_dir is None else base_dir / spec.pickle
    if not path.exists():
        raise FileNotFoundError(f"network pickle {path} does not exist")
    _require_nvlabs_code()
    with open(path, "rb") as f:
        try:
            legacy = importlib.import_module("legacy")  # converts TF-era pickles as well
            data = legacy.load_network_pkl(f)
        except ImportError:
            data = pickle.load(f)  # noqa: S301 -- guarded by trust_pickle above
    if not isinstance(data, dict) or "G_ema" not in data:
        raise ValueError(f"{path} holds no 'G_ema' network (keys: {sorted(data) if isinstance(data, dict) else '-'})")
    return StyleGan2AdaGenerator(data["G_ema"], spec)


class StyleGan2AdaGenerator(Generator):
    def __init__(self, g, spec: StyleGan2AdaSpec):
        super().__init__()
        self.g = freeze(g.float())
        self.noise_mode = spec.noise_mode
        self.z_dim, self.w_dim, self.num_ws = int(g.z_dim), int(g.w_dim), int(g.num_ws)
        self.image_size, self.channels = int(g.img_resolution), int(g.img_channels)
        self.c_dim = int(getattr(g, "c_dim", 0))
        if self.c_dim and spec.class_index is None:
            raise ConfigError(f"this StyleGAN2-ADA network is class-conditional (c_dim={self.c_dim}): set class_index")
        if spec.class_index is not None and spec.class_index >= max(self.c_dim, 1):
            raise ConfigError(f"class_index {spec.class_index} out of range for c_dim={self.c_dim}")
        self.class_index = spec.class_index
        self.register_buffer("w_avg", g.mapping.w_avg.detach().clone().float())

    def _labels(self, n: int, device) -> torch.Tensor:
        c = torch.zeros(n, self.c_dim, device=device)
        if self.c_dim:
            c[:, self.class_index] = 1
        return c

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        return self.g.mapping(z, self._labels(len(z), z.device), truncation_psi=1.0)

    def _synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.g.synthesis(ws, noise_mode=self.noise_mode, force_fp32=True)
        return (x + 1) / 2  # linear; Generator.synthesis clamps except on an attack's differentiated path
