"""--compare nls: the audited architecture retrained on the private data with the audit's `retrain`
recipe, once with alpha 0 (the same-recipe baseline) and once with negative label smoothing.

Possible when the architecture is code we can build afresh: a `module` spec (your factory) or an
`lsmia train` run (a registry architecture). A TorchScript, torch.export or pickle file holds trained
weights in a fixed graph; it cannot be re-initialised, so it is refused with that reason.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from ..models import ForeignClassifier, ModelSpec, available_models, register_model
from ..models.loading import build_module, probe
from ..runio import load_checkpoint, save_checkpoint, write_text

SPEC_FILE = "model.yaml"


def not_retrainable(spec: ModelSpec) -> str | None:
    """Why --compare cannot retrain this model, or None when it can."""
    if spec.kind in ("module", "lsmia"):
        return None
    return (f"--compare nls retrains the model's architecture from scratch, which needs it as code: a {spec.kind} "
            "file holds a fixed graph with trained weights. Give a YAML spec {kind: module, import: "
            "'pkg.mod:factory', ...} for your network, or run the audit without --compare")


def _registered_name(spec: ModelSpec) -> str:
    """The spec's factory as a registry model (fresh weights: the spec's state dict is not loaded)."""
    name = f"module:{spec.import_path}"
    if name in available_models():
        return name
    fresh = spec.model_copy(update={"state_dict": None})

    def build(num_classes: int, in_channels: int, image_size: int, pretrained=None) -> ForeignClassifier:
        model = ForeignClassifier(build_module(fresh), fresh.image_size, fresh.channels, num_classes,
                                  fresh.value_range, fresh.mean, fresh.std, source=fresh.import_path)
        k = probe(model.eval(), fresh.channels, fresh.image_size, f"model {fresh.import_path}")
        if k != num_classes:
            raise ValueError(f"{fresh.import_path}(**kwargs) outputs {k} logits; the private data has {num_classes} "
                             "classes")
        return model.train()

    register_model(name, build)
    return name


def retrain_arch(spec: ModelSpec) -> str:
    """The registry name the trainer builds for this spec's architecture."""
    if spec.kind == "lsmia":
        path = Path(spec.path)
        return load_checkpoint(path / "model.pt" if path.is_dir() else path)["arch"]["name"]
    return _registered_name(spec)


def retrained_target(spec: ModelSpec, run_dir: Path) -> Path:
    """What the attack loads for a retrained model: the run directory (registry arch) or, for a module
    factory, a module spec over the trained network's weights (loadable in any process), which
    write_retrained_target writes when the training has finished."""
    return Path(run_dir) if spec.kind == "lsmia" else Path(run_dir) / SPEC_FILE


def write_retrained_target(spec: ModelSpec, run_dir: Path) -> Path:
    """Writes retrained_target(spec, run_dir) from the finished training in run_dir (nothing to write for a
    registry arch) and returns it."""
    run_dir = Path(run_dir)
    if spec.kind == "lsmia":
        return run_dir
    state = load_checkpoint(run_dir / "model.pt")["model"]
    save_checkpoint(run_dir / "net_state.pt", {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    trained = spec.model_copy(update={"state_dict": (run_dir / "net_state.pt").resolve()})
    write_text(retrained_target(spec, run_dir), yaml.safe_dump(trained.dump(), sort_keys=False))
    return retrained_target(spec, run_dir)
