"""`lsmia audit`: measure what a model inversion attack recovers from a classifier trained anywhere.

    from lsmia_ext.audit import load_audit_config, model_spec, load_model, run_audit
    model = load_model(model_spec("model.ts.pt", image_size=28, channels=1))  # Classifier contract, checked
    run_audit(load_audit_config(), "model.ts.pt", "private/", "public/", "runs/audit",
              contract={"image_size": 28, "channels": 1}, compare=None)
Model kinds and the input contract: spec.py; the wrapper: wrap.py; the stages: pipeline.py.
"""
from .config import AuditConfig, load_audit_config
from .load import load_model, model_spec, sniff
from .pipeline import run_audit
from .spec import MODEL_KINDS, ModelSpec
from .wrap import ForeignClassifier

__all__ = ["AuditConfig", "ForeignClassifier", "MODEL_KINDS", "ModelSpec", "load_audit_config", "load_model",
           "model_spec", "run_audit", "sniff"]
