"""Loading a classifier: an `lsmia train` run directory or checkpoint, or any model behind a model spec
(TorchScript, torch.export, your own module): find out what a file is without running it, load it
the safe way, wrap it into the Classifier contract, and check its declared input contract with one
probe forward pass. Below lsmia_ext.audit (which audits what this loads) and above models.registry.

    spec = model_spec("model.ts.pt", image_size=28, channels=1)   # or a YAML spec, or an lsmia run dir
    model = load_model(spec)                                        # ForeignClassifier, eval mode, frozen
    target = load_classifier("runs/target")                         # RUN_DIR/model.pt, or a .yaml spec
"""
from __future__ import annotations

import importlib
import pickle
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..config import read_yaml, validate
from .foreign import ForeignClassifier
from .registry import MODEL_FILE, classifier_from_checkpoint
from .spec import PICKLE_REFUSAL, ModelSpec


def sniff(path: Path) -> str:
    """'torchscript', 'export', 'lsmia', 'state_dict' or 'pickle', read from the archive's member names
    and, for torch.save files, a weights_only load (which refuses anything but tensors and containers)."""
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        if any(n.endswith("/archive_format") for n in names):
            return "export"
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError):
        return "pickle"
    except Exception as e:  # noqa: BLE001 - any other failure means it is no torch file at all
        raise ValueError(f"{path} is not a model file torch can read ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "model" in obj and "arch" in obj:
        return "lsmia"
    if isinstance(obj, dict):
        return "state_dict"
    raise ValueError(f"{path} holds a {type(obj).__name__}, not a model")


def model_spec(source: str | Path, **contract) -> ModelSpec:
    """A ModelSpec from a YAML spec, a model file or an `lsmia train` run directory; `contract` keys
    (image_size, channels, num_classes, value_range, mean, std, trust_pickle) given as not None win over
    the YAML's. Paths in the result are absolute."""
    path = Path(source)
    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in contract.items() if v is not None}
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.is_dir():
        if not (path / "model.pt").exists():
            raise FileNotFoundError(f"{path} is a directory without model.pt: give a model file, a YAML spec "
                                    "or an `lsmia train` run directory")
        return validate(ModelSpec, {"kind": "lsmia", "path": str(path), **given}, str(path)).resolved(None)
    if path.suffix in (".yaml", ".yml"):
        return validate(ModelSpec, {**read_yaml(path), **given}, str(path)).resolved(path.parent)
    kind = sniff(path)
    if kind == "state_dict":
        raise ValueError(f"{path} holds only weights (a state dict), not a model: write a YAML spec "
                         "{kind: module, import: 'your_package.module:factory', state_dict: " f"{path}" "} "
                         "naming the code that builds the network")
    spec = validate(ModelSpec, {"kind": kind, "path": str(path), **given}, "--model and contract options")
    return spec.resolved(None)


def _import(path: str):
    module_name, attr = path.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ValueError(f"model import {path!r}: cannot import {module_name!r} ({e}); put it on PYTHONPATH") from None
    except AttributeError:
        raise ValueError(f"model import {path!r}: module {module_name!r} has no attribute {attr!r}") from None


def build_module(spec: ModelSpec) -> nn.Module:
    """The user's network from its factory, with the spec's state dict (weights_only) when given."""
    from .torchvision_nets import _read_state_dict

    net = _import(spec.import_path)(**spec.kwargs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec.import_path}(**kwargs) returned {type(net).__name__}, not a torch.nn.Module")
    if spec.state_dict is not None:
        try:
            net.load_state_dict(_read_state_dict(spec.state_dict))
        except RuntimeError as e:
            raise ValueError(f"state_dict {spec.state_dict} does not fit {spec.import_path}: "
                             f"{str(e).strip().splitlines()[-1]}") from None
    return net


def static_batch_size(program) -> int | None:
    """The batch size a torch.export program is specialised to (exported without dynamic_shapes: the
    first user input's dim 0 is a plain int in its input spec), or None for a dynamic batch."""
    inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is None or len(shape) == 0:
                return None
            return int(shape[0]) if isinstance(shape[0], int) else None
    return None


def _network(spec: ModelSpec) -> tuple[nn.Module, bool, int | None]:
    """(the raw network, whether it follows train/eval switches, its static batch size or None)."""
    found = sniff(spec.path) if spec.kind in ("torchscript", "export", "pickle") else spec.kind
    if found != spec.kind:
        raise ValueError(f"{spec.path} is a {found} file, but the spec says kind: {spec.kind}")
    if spec.kind == "torchscript":
        with _quiet_deprecation():
            return torch.jit.load(str(spec.path), map_location="cpu"), True, None
    if spec.kind == "export":
        with _quiet_deprecation():
            program = torch.export.load(str(spec.path))
        return program.module(), False, static_batch_size(program)
    if spec.kind == "module":
        return build_module(spec), True, None
    if not spec.trust_pickle:
        raise ValueError(f"{spec.path} {PICKLE_REFUSAL}")
    net = torch.load(spec.path, map_location="cpu", weights_only=False)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec.path} unpickled to a {type(net).__name__}, not a torch.nn.Module")
    return net, True, None


@contextmanager
def _quiet_deprecation():
    """Our own loads of the user's file: torch's "`torch.jit.load` is deprecated" (and the like)
    FutureWarning is advice to the file's author, not to the auditor; only that warning is muted,
    only around the load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
        yield


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


@torch.no_grad()
def probe(model: nn.Module, channels: int, image_size: int, what: str) -> int:
    """One forward pass of 2 random images at the declared size; returns the number of logits."""
    x = torch.rand(2, channels, image_size, image_size, generator=torch.Generator().manual_seed(0))
    try:
        out = model(x)
    except Exception as e:  # noqa: BLE001 - a foreign model can raise anything; the user gets one line
        raise ValueError(f"{what} cannot take {channels} x {image_size} x {image_size} images "
                         f"(batch of 2): {_last_line(e)}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what} returned {shape} for a batch of 2 images; expected logits (2, num_classes)")
    return int(out.shape[1])


def load_model(spec: ModelSpec) -> nn.Module:
    """The model of `spec` behind the Classifier contract, in eval mode with frozen parameters, its
    contract checked (a mismatch raises ValueError with one line saying what does not fit)."""
    if spec.kind == "lsmia":
        model = load_classifier(spec.path)
        for key, have in (("image_size", model.image_size), ("channels", model.in_channels),
                          ("num_classes", model.num_classes)):
            want = getattr(spec, key)
            if want is not None and want != have:
                raise ValueError(f"{spec.path} was trained with {key} {have}, but {want} was given")
        return model
    net, follows_mode, static_batch = _network(spec)
    model = ForeignClassifier(net, spec.image_size, spec.channels, spec.num_classes or 0, spec.value_range,
                              spec.mean, spec.std, follows_mode, source=str(spec.path or spec.import_path),
                              static_batch=static_batch)
    model.eval().requires_grad_(False)
    k = probe(model, spec.channels, spec.image_size, f"model {model.source}")
    if spec.num_classes is not None and k != spec.num_classes:
        raise ValueError(f"model {model.source} outputs {k} logits, but num_classes {spec.num_classes} was given")
    model.num_classes = k
    return model


def load_classifier(path_or_run_dir: str | Path, map_location="cpu") -> nn.Module:
    """A trained classifier from RUN_DIR/model.pt (or the file itself): eval mode, parameters frozen
    (attacks and metrics differentiate through it w.r.t. the input, never w.r.t. its weights).
    A YAML model spec (TorchScript, torch.export, your own module) loads too."""
    path = Path(path_or_run_dir)
    if path.suffix in (".yaml", ".yml"):
        return load_model(model_spec(path)).to(map_location)
    return classifier_from_checkpoint(path / MODEL_FILE if path.is_dir() else path, map_location)
