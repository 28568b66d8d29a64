"""`lsmia audit`: measure what a model inversion attack recovers from a classifier trained anywhere.

    from lsmia_ext.audit import load_audit_config, model_spec, load_model, run_audit
    model = load_model(model_spec("model.ts.pt", image_size=28, channels=1))  # Classifier contract, checked
    run_audit(load_audit_config(), "model.ts.pt", "private/", "public/", "runs/audit",
              contract={"image_size": 28, "channels": 1}, compare=None)
Model kinds and the input contract: lsmia_ext/models/spec.py; loading: models/loading.py; the wrapper:
models/foreign.py (re-exported here); the driver: pipeline.py; the stage graph: graph.py.
"""
from ..models import MODEL_KINDS, ForeignClassifier, ModelSpec, load_model, model_spec, sniff
from .config import AuditConfig, load_audit_config
from .pipeline import run_audit

__all__ = ["AuditConfig", "ForeignClassifier", "MODEL_KINDS", "ModelSpec", "load_audit_config", "load_model",
           "model_spec", "run_audit", "sniff"]
