"""ModelSpec: which model file to audit and its input contract, from a YAML file or the command line.

Kinds (how the file is loaded; none runs untrusted code unless trust_pickle is set):
  torchscript  torch.jit.save archive: a graph interpreted by TorchScript, no Python code runs
  export       torch.export.save program (.pt2): a graph of aten ops, no Python code runs
  module       your own Python code, named by you: {import: "pkg.mod:factory", kwargs, state_dict}
               (the factory is trusted because you name it; the weights load with weights_only=True)
  lsmia        a run directory (or model.pt) of `lsmia train`
  pickle       a whole module saved with torch.save(model): unpickling runs arbitrary code, so it is
               refused unless trust_pickle: true
Contract: the model takes images (B, channels, image_size, image_size) whose pixels lie in value_range
and are then normalised per channel as (x - mean) / std; it returns logits (B, num_classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from ..config import Strict

MODEL_KINDS = ("torchscript", "export", "module", "lsmia", "pickle")
PICKLE_REFUSAL = ("is a pickled whole module (torch.save(model)): loading it runs code stored in the file. "
                  "Export it with torch.jit.script/trace + save or torch.export + save, or write a module spec "
                  "for your own code; to load it anyway, pass --trust-pickle (YAML: trust_pickle: true)")


class ModelSpec(Strict):
    kind: Literal["torchscript", "export", "module", "lsmia", "pickle"]
    path: Optional[Path] = None
    import_path: Optional[str] = Field(default=None, alias="import",
                                       description="module kind: 'package.module:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    state_dict: Optional[Path] = None
    image_size: Optional[int] = Field(default=None, ge=8, le=1024)
    channels: Optional[Literal[1, 3]] = None
    num_classes: Optional[int] = Field(default=None, ge=2)
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])
    trust_pickle: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "module":
            if not self.import_path or ":" not in self.import_path or not all(self.import_path.split(":", 1)):
                raise ValueError(f"a module spec needs import: 'package.module:factory'; got {self.import_path!r}")
        elif self.path is None:
            raise ValueError(f"a {self.kind} spec needs path: the model file")
        if self.kind != "lsmia" and (self.image_size is None or self.channels is None):
            raise ValueError("state the model's input contract: image_size and channels (CLI: --image-size N "
                             "--channels 1|3)")
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"value_range must be [lo, hi] with lo < hi; got {list(self.value_range)}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels or 1):
                raise ValueError(f"{name} needs 1 value or one per channel ({self.channels}); got {values}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0; got {self.std}")
        return self

    def resolved(self, base_dir: Path | None) -> "ModelSpec":
        """The same spec with its file paths made absolute (relative ones are relative to base_dir)."""
        def fix(p: Optional[Path]) -> Optional[Path]:
            if p is None or p.is_absolute() or base_dir is None:
                return p.resolve() if p is not None else None
            return (base_dir / p).resolve()

        return self.model_copy(update={"path": fix(self.path), "state_dict": fix(self.state_dict)})

    def contract_text(self) -> str:
        lo, hi = self.value_range
        return (f"{self.channels} x {self.image_size} x {self.image_size} images, pixels in [{lo:g}, {hi:g}] "
                f"normalised with mean {self.mean} std {self.std}, {self.num_classes} classes")

    def dump(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
