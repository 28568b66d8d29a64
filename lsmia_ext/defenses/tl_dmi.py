"""TL-DMI (Ho et al., CVPR 2024, "Model Inversion Robustness: Can Transfer Learning Help?"): pretrain the
target architecture on public data, then fine-tune on the private data with the first layers frozen, so
that the private data reaches only the last layers. Both phases run inside one `lsmia train` run.

Layers: the parametrised top-level blocks of the model's trunk, in forward order (`layers(model)`):
small_cnn: conv stage 1, 2, 3 (conv-BN-ReLU each) and the 128-d Linear = 4; small_resnet: the stem and each
residual block; torchvision ResNets: conv1, bn1, layer1..layer4 = 6. Pooling, activations, dropout and
flattening hold no parameters and are not counted. The class head is never frozen (it is new: the
private classes are not the public ones). The dial `freeze_layers` = k freezes the first k layers
(0: everything is fine-tuned after pretraining; all of them: only the head learns the private classes).
The authors' code freezes the children of the feature extractor with index <= k (so k + 1 of them,
counting parameter-free ones); here k means k parametrised layers, which is what a reader expects.

Pretraining (`prepare`, once per fresh run): the scenario's public training split only (the images the
prior and the attacker already have: the public classes / public sub-classes / public dataset), a
temporary head over the public classes, hard labels, the run's optimiser type at `pretrain_lr`, cosine
over `pretrain_epochs`, the run's batch size and augmentation (the trainer's loop, train/pretrain.py).
`pretraining_data` asserts on the exact uint8 tensors that pretraining trains on that none equals a
private (train, val or test) image (image folders: the scenario's file-path check, scenario.py). Its public
test accuracy is recorded in the run's final metrics (pretrain_public_acc).

Choices where the paper leaves room, and why:
- The authors pretrain on large public sets (ImageNet, or the public half of the face data) and take
  their public pretrained weights; we have no such weights for our small models, and the scenario's
  public split is what this threat model calls public, so pretraining runs here, seeded like the run.
- Frozen layers keep requires_grad False (as the authors'); their BatchNorm running statistics still
  adapt to the private batches in training mode, as in the authors' code (buffers, not parameters).
- Under torchrun every rank pretrains the same way (same seed, whole public split), so all ranks start
  fine-tuning from the same weights without a broadcast.
- Fine-tuning protocol: the study's recipe for every target (train-fmnist-target), so only the defense
  differs, and the last epoch is kept.
"""
from __future__ import annotations

from torch import nn

from ..data import DataSeparationError
from .base import DEFENSES, Defense


def layers(model: nn.Module) -> list[nn.Module]:
    """The model's freezable layers: the trunk's top-level children that hold parameters, in order."""
    return [m for m in model.trunk.children() if any(True for _ in m.parameters())]


def freeze(model: nn.Module, k: int) -> list[nn.Module]:
    """requires_grad False on every parameter of the first k layers; returns those layers."""
    blocks = layers(model)
    if not 0 <= k <= len(blocks):
        raise ValueError(f"defense.freeze_layers must lie in 0..{len(blocks)} (this model's layers), got {k}")
    for block in blocks[:k]:
        block.requires_grad_(False)
    return blocks[:k]


def _has_public_data(data) -> bool:
    return bool(data.identities is not None or data.public_classes or data.public_dataset is not None)


def pretraining_data(scenario):
    """The public training split, after asserting that none of its images is a private image."""
    public = scenario.public_train
    if len(public) == 0:
        raise DataSeparationError("TL-DMI pretrains on the public classes, and this scenario has none")
    if hasattr(public, "images"):
        private = {bytes(row) for split in (scenario.private_train, scenario.private_val, scenario.private_test)
                   if len(split) for row in split.images.reshape(len(split), -1).numpy()}
        shared = sum(bytes(row) in private for row in public.images.reshape(len(public), -1).numpy())
        if shared:
            raise DataSeparationError(f"{shared} of the {len(public)} public training images equal a private "
                                      "image: TL-DMI would pretrain on private data")
    return public


@DEFENSES.register("tl_dmi")
class TLDMI(Defense):
    kind = "tl_dmi"

    @classmethod
    def from_config(cls, cfg) -> "TLDMI":
        return cls(cfg.freeze_layers, cfg.pretrain_epochs, cfg.pretrain_lr)

    @classmethod
    def check_config(cls, train_cfg, build) -> None:
        if not _has_public_data(train_cfg.data):
            raise ValueError("defense.kind tl_dmi pretrains on public images: the data section has none (set "
                             "data.public_classes, data.public_dataset or data.identities)")
        n = len(layers(build()))
        if train_cfg.defense.freeze_layers > n:
            raise ValueError(f"defense.freeze_layers must lie in 0..{n} ({train_cfg.model.name} has {n} layers), "
                             f"got {train_cfg.defense.freeze_layers}")

    def __init__(self, freeze_layers: int, pretrain_epochs: int = 3, pretrain_lr: float = 0.002):
        if freeze_layers < 0 or pretrain_epochs < 1 or not pretrain_lr > 0:
            raise ValueError(f"TL-DMI needs freeze_layers >= 0, pretrain_epochs >= 1 and pretrain_lr > 0, got "
                             f"{freeze_layers}, {pretrain_epochs}, {pretrain_lr}")
        self.freeze_layers, self.pretrain_epochs, self.pretrain_lr = freeze_layers, pretrain_epochs, pretrain_lr

    def prepare(self, model, scenario, ctx) -> dict:
        return ctx.pretrain(model, pretraining_data(scenario), scenario.public_test, scenario.num_public_classes,
                            self.pretrain_epochs, self.pretrain_lr)

    def attach(self, model) -> None:
        freeze(model, self.freeze_layers)
