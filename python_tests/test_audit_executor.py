"""`lsmia audit` on the experiment's executor: its stage hashes are those of the sequential audit of earlier
versions (existing run directories are reused), and --compare nls on a real two-worker Dask cluster gives
the sequential run's rows and retrained weights, with the user's own `module` factory retrained on a
worker process (which has to register the architecture itself)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from conftest import lsmia
from lsmia_ext.audit.compare import retrain_arch
from lsmia_ext.audit.config import load_audit_config
from lsmia_ext.audit.graph import audit_graph
from lsmia_ext.data import DataConfig
from lsmia_ext.models import ModelSpec

# The hashes the audit wrote before it ran on the executor (sequential driver loop, main c9a5976), for the
# shipped config, a module spec, --compare nls and --attacks ppa,gmi with the fixed inputs below.
PINNED = {
    "prior": "5bd182a6a86a1e47", "eval_model": "df33c8c91fc16865",
    "train retrained_hard": "c9a98618db4f8c69", "train retrained_nls": "5ba424f616f062e9",
    "attack model ppa": "499076c8b896a64d", "evaluate model ppa": "6a535ef0c68d6504",
    "attack model gmi": "31e454f6b6ea9048", "evaluate model gmi": "1de69461ba1421a8",
    "attack retrained_hard ppa": "40a573f198de808e", "evaluate retrained_hard ppa": "8d5381132c47185d",
    "attack retrained_hard gmi": "50f3208c615cfec2", "evaluate retrained_hard gmi": "70bc90e9377f0c96",
    "attack retrained_nls ppa": "a89afda7cb966cac", "evaluate retrained_nls ppa": "ce65e82599372bc7",
    "attack retrained_nls gmi": "11ad590aded562bd", "evaluate retrained_nls gmi": "4fecaee4b9cc219b",
}


def test_audit_stage_hashes_unchanged(tmp_path):
    root, cfg = Path("/tmp/audit_pin"), load_audit_config()  # folders.audit_data of these (absent) folders:
    data = DataConfig(name="imagefolder", root=root / "private", private_classes=list(range(5)),
                      public_dataset={"name": "imagefolder", "root": root / "public"}, image_size=8, channels=1,
                      test_fraction=cfg.test_fraction, train_per_class=cfg.train_per_class, seed=cfg.data_seed)
    spec = ModelSpec.model_validate({"kind": "module", "import": "lsmia_ext.audit.example:ExampleNet",
                                     "kwargs": {"width": 8}, "state_dict": root / "net_state.pt", "image_size": 8,
                                     "channels": 1, "num_classes": 5, "mean": [0.5], "std": [0.5]})
    graph, *_ = audit_graph(cfg, tmp_path, data, spec, retrain_arch(spec), "fp-private",
                            "fp-public", "model-sha", ("ppa", "gmi"), "nls")
    assert graph.hashes == PINNED
    assert [n.key for n in graph.nodes] == list(PINNED)  # the sequential order of earlier versions
