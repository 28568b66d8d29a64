"""`lsmia audit` on the experiment's executor: its stage hashes are those of the sequential audit of earlier
versions (existing run directories are reused), and --compare nls on a real two-worker Dask cluster gives
the sequential run's rows and retrained weights, with the user's own `module` factory retrained on a
worker process (which has to register the architecture itself)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from audit_user_net import make_net
from conftest import lsmia
from test_audit import _tiny_args, folders  # noqa: F401 -- the digits image folders (a fixture)
from test_executor import _weights_sha
from lsmia_ext.audit.compare import retrain_arch
from lsmia_ext.audit.config import load_audit_config
from lsmia_ext.audit.graph import audit_graph
from lsmia_ext.audit.suite import attack_configs
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
                            "fp-public", "model-sha", attack_configs(cfg, ("ppa", "gmi"), None), "nls")
    assert graph.hashes == PINNED
    assert [n.key for n in graph.nodes] == list(PINNED)  # the sequential order of earlier versions


def _stage_records(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.rglob("stage.json")}


def _audit_json(out: Path) -> dict:
    """OUT/audit.json, its run directory's path written OUT (rows name the evaluation model's directory)."""
    return json.loads((out / "audit.json").read_text().replace(str(out), "OUT"))


def test_compare_nls_on_two_dask_workers_equals_sequential(folders, tmp_path):
    """The user's factory (python_tests/audit_user_net.py, not part of lsmia_ext) retrained on Dask workers:
    each worker process registers it itself; same numbers and weights as in this process."""
    pytest.importorskip("distributed")
    torch.manual_seed(0)
    torch.save(make_net(5, 8).state_dict(), tmp_path / "net.pt")
    spec = tmp_path / "model.yaml"
    spec.write_text(f"kind: module\nimport: audit_user_net:make_net\nkwargs: {{width: 8}}\nstate_dict: {tmp_path / 'net.pt'}\n"
                    "image_size: 8\nchannels: 1\nmean: [0.5]\nstd: [0.5]\n")
    runs = {}
    for how, extra in (("sequential", []), ("dask", ["--workers", "2"])):
        out = tmp_path / how
        t0 = time.perf_counter()
        code, text, err = lsmia("audit", "--model", spec, "--private", folders / "private", "--public",
                                folders / "public", "--out", out, "--compare", "nls", *_tiny_args(*extra))
        assert code == 0, err
        runs[how] = out
        print(f"{how}: {time.perf_counter() - t0:.1f} s")
    seq, dask = (_audit_json(runs[k]) for k in ("sequential", "dask"))
    assert [(r["key"], r["attack"]) for r in seq["rows"]] == [("model", "ppa"), ("retrained_hard", "ppa"),
                                                             ("retrained_nls", "ppa")]
    assert dask["rows"] == seq["rows"]  # same code, seeds, thread count and machine: the same numbers
    for rel in ("retrained_hard/model.pt", "retrained_nls/model.pt", "eval_model/model.pt"):
        assert _weights_sha(runs["sequential"] / rel) == _weights_sha(runs["dask"] / rel), rel
    records = _stage_records(runs["dask"])
    assert set(records) == set(_stage_records(runs["sequential"])) and len(records) == 10
    workers = {k: r["worker"] for k, r in records.items()}
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers.values()), workers
    assert len(set(workers.values())) == 2, workers  # the retrainings ran side by side
    assert (runs["dask"] / "retrained_nls" / "model.yaml").exists()  # written on the worker, read by the attack
    stages = dask["timings"]["stages"]
    assert stages["attack retrained_nls ppa"]["after"] == ["prior", "train retrained_nls"]
    assert stages["evaluate model ppa"]["after"] == ["eval_model", "attack model ppa"]
    assert "core-seconds in all; critical path" in (runs["dask"] / "report.md").read_text()
