"""Checkpoint formats of our prior: RUN_DIR/generator.pt (EMA generator) and RUN_DIR/discriminator.pt.

Plain dicts of tensors, numbers and strings, so they load with weights_only=True (no code runs).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError, build_or_explain
from ..runio import load_checkpoint, save_checkpoint
from .interface import freeze
from .networks import Discriminator, StyleGenerator

GENERATOR_FORMAT = "lsmia-style-generator-v1"
DISCRIMINATOR_FORMAT = "lsmia-discriminator-v1"


def save_generator(path: Path, g: StyleGenerator, step: int) -> Path:
    return save_checkpoint(path, {"format": GENERATOR_FORMAT, "arch": g.arch, "state_dict": g.state_dict(),
                                  "step": step})


def save_discriminator(path: Path, d: Discriminator) -> Path:
    return save_checkpoint(path, {"format": DISCRIMINATOR_FORMAT, "arch": d.arch, "state_dict": d.state_dict()})


def _read(path: Path, fmt: str, what: str) -> dict:
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserInputError(f"{path} is not a {what} checkpoint of this package (format {found!r}, "
                         f"expected {fmt!r})")
    return ckpt


def _build(path: Path, ckpt: dict, network: type, what: str):
    """The network of a checkpoint of the right format whose architecture or weights may still be damaged."""
    def build():
        net = network(**ckpt["arch"])
        net.load_state_dict(ckpt["state_dict"])
        return net

    net = build_or_explain(path, what, build)
    return freeze(net)


def load_style_generator(path: Path) -> StyleGenerator:
    return _build(path, _read(path, GENERATOR_FORMAT, "generator"), StyleGenerator, "generator")


def load_our_discriminator(path: Path) -> Discriminator:
    return _build(path, _read(path, DISCRIMINATOR_FORMAT, "discriminator"), Discriminator, "discriminator")
