"""Model augmentation (LOMMA: Nguyen et al., "Re-thinking Model Inversion Attacks Against Deep Neural
Networks", CVPR 2023): surrogate classifiers distilled from the target on images the attacker has.

What LOMMA does (paper, section 4, and the authors' code):
- N "augmented models" of architectures other than the target's (N = 3 for their CelebA/FFHQ targets:
  EfficientNet-B0/B1/B2 against VGG16), each trained by knowledge distillation alone: no labels, the loss is
  KL(softmax(z_T / tau) || softmax(z_S / tau)) * tau^2 with the target's outputs as the soft labels, tau = 1.
- The distillation data are the public images the attack's GAN was trained on (the auxiliary set); never a
  private image.
- SGD, lr 0.01, momentum 0.9, weight decay 1e-4, batch 64, 20 epochs (lr halved every 20 epochs).
- During the attack the identity loss is the mean over the target and its augmented models; the feature
  regulariser (their other contribution) uses the target only.

Where the paper is vague, and what is chosen here:
- Whether generator samples may be distillation data is not discussed (their GANs are trained on the same
  public set, so the question does not arise). `sources` chooses: "public" (the scenario's public identities'
  training images, which the prior learned from) and/or "prior" (samples of the generator, truncation
  `prior_truncation_psi`, seeded): both are attacker-side; private splits are refused by the config.
- Budget: epochs do not transfer between data sets of different sizes, so training is `steps` SGD steps on
  batches drawn without replacement (reshuffled each pass), at a constant lr (our runs are far shorter than
  the 20 epochs at which their step schedule first acts). Default 400 x 64 images (about 0.8 passes over the
  default scenario's 31 k public + 4 k prior images) on one CPU thread of a shared 2-core machine at load 5-7:
  small_cnn_w6 14 s, small_cnn_w8 15 s, small_cnn 29 s, small_cnn_wide 64 s, small_resnet 65 s, plus about
  25 s once per target for the images, the private-image check and the target's soft labels.
- No input augmentation while distilling (the paper names none); surrogates see the target's input geometry
  (channels, size), the generator's samples converted as the attack shows them to the target.
- Selection: LOMMA's attacks (GMI, KEDMI) have no candidate selection. PPA's selections here average the
  members' selection scores, the same ensemble rule as the loss.
- Held-out agreement (top-1 of surrogate == top-1 of target) on attacker-side images kept out of training,
  per source: the measure of how well a surrogate imitates the target. LOMMA reports accuracy on private
  test data instead, which an attacker cannot compute; it is not used here.

Separation: every training and held-out image is compared, pixel for pixel, with every private image of the
scenario (train, validation, test) in the same geometry; an identical image is dropped (counted in the
summary) and the exact tensor trained on is checked again right before training.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_hash
from ..data.scenario import DataSeparationError
from ..errors import UserInputError
from ..models import build_model, classifier_state, load_classifier
from ..runio import RunDir, read_json, save_checkpoint, write_json
from .config import AugmentationConfig
from .views import target_geometry, to_target

SUMMARY = "surrogates.json"
PRIVATE_SPLITS = ("private_train", "private_val", "private_test")


def surrogate_hash(aug_cfg: AugmentationConfig, target_hash: str, prior_hash: str, data: Optional[dict] = None) -> str:
    """The stage hash of a target's surrogates: what they are distilled from (target), on (prior, data) and how."""
    aug = aug_cfg.model_dump(mode="json", exclude={"include_target"})
    return config_hash({"augmentation": aug, "target": target_hash, "prior": prior_hash,
                        **({"data": data} if data is not None else {})})


def _row_keys(images: torch.Tensor) -> list[bytes]:
    """One exact byte string per image (float32, contiguous): equal keys iff equal pixels."""
    flat = images.detach().float().cpu().contiguous().flatten(1)
    return [row.numpy().tobytes() for row in flat]


def private_keys(scenario, channels: int, size: int) -> set[bytes]:
    """Every private image of the scenario, in the geometry the surrogates are trained in."""
    keys: set[bytes] = set()
    for split in PRIVATE_SPLITS:
        x, _ = scenario.tensors(split)
        if x.numel():
            keys.update(_row_keys(to_target(x, channels, size)))
    return keys


def check_attacker_side(images: torch.Tensor, private: set[bytes]) -> None:
    """DataSeparationError when any row of `images` is pixel-identical to a private image."""
    hits = sum(k in private for k in _row_keys(images))
    if hits:
        raise DataSeparationError(f"{hits} surrogate training images are private images")


def _split(images: torch.Tensor, holdout: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held out): a seeded shuffle, at most `holdout` and at most a fifth of the images held out."""
    perm = torch.randperm(images.shape[0], generator=gen)
    n_held = min(holdout, images.shape[0] // 5)
    return images[perm[n_held:]], images[perm[:n_held]]


@torch.no_grad()
def attacker_images(aug_cfg: AugmentationConfig, target: nn.Module, generator: Optional[nn.Module], scenario
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
    """(training images, held-out images per source, counts): attacker-side images only, in the target's
    geometry, with any image identical to a private one dropped."""
    channels, size = target_geometry(target)
    gen = torch.Generator().manual_seed(aug_cfg.seed)
    private = private_keys(scenario, channels, size)
    train, held, counts = [], {}, {}
    for source in aug_cfg.sources:
        if source == "public":
            images = to_target(scenario.tensors("public_train")[0], channels, size)
        else:
            if generator is None:
                raise UserInputError("augmentation.sources 'prior' needs the attack's generator prior")
            n = aug_cfg.prior_samples + min(aug_cfg.holdout, aug_cfg.prior_samples)
            samples = generator.sample(n, seed=aug_cfg.seed, truncation_psi=aug_cfg.prior_truncation_psi)
            images = to_target(samples.float().cpu(), channels, size)
        keep = torch.tensor([k not in private for k in _row_keys(images)], dtype=torch.bool)
        counts[source] = {"dropped_private_duplicates": int((~keep).sum())}
        tr, ho = _split(images[keep], aug_cfg.holdout, gen)
        train.append(tr)
        held[source] = ho
        counts[source].update(train=int(tr.shape[0]), held_out=int(ho.shape[0]))
    train_x = torch.cat(train)
    if train_x.shape[0] == 0:
        raise UserInputError(f"augmentation.sources {aug_cfg.sources}: no attacker-side image to distil on")
    check_attacker_side(train_x, private)
    for ho in held.values():
        check_attacker_side(ho, private)
    return train_x, held, counts


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss, batch mean: KL(softmax(t / tau) || softmax(s / tau)) * tau^2."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") * temperature ** 2


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)])


def distil_one(aug_cfg: AugmentationConfig, arch: str, seed: int, images: torch.Tensor, teacher_logits: torch.Tensor,
               geometry: tuple[int, int, int], device: torch.device) -> nn.Module:
    """One surrogate of `arch` trained by distillation on (images, teacher_logits); eval mode, frozen."""
    num_classes, channels, size = geometry
    torch.manual_seed(seed)
    model = build_model(arch, num_classes, channels, size).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=aug_cfg.lr, momentum=aug_cfg.momentum,
                          weight_decay=aug_cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n, bs = images.shape[0], min(aug_cfg.batch_size, images.shape[0])
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(aug_cfg.steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + bs]
        pos += bs
        loss = kd_loss(model(images[idx].to(device)), teacher_logits[idx].to(device), aug_cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.float().cpu().contiguous().numpy().tobytes()).hexdigest()


def distill_surrogates(aug_cfg: AugmentationConfig, target: nn.Module, generator: Optional[nn.Module], scenario,
                       out_dir: str | Path, stage_hash: Optional[str] = None) -> dict:
    """Distils one surrogate per aug_cfg.archs entry from `target` on attacker-side images and writes
    out_dir/surrogate_<i>/model.pt (classifier checkpoints: load_classifier reads them) and
    out_dir/surrogates.json (the summary, returned). A finished directory of the same config is returned as
    is; `stage_hash` (surrogate_hash) names the config when the caller has one."""
    config = {"augmentation": aug_cfg.model_dump(mode="json")}
    run = RunDir(out_dir, "surrogates", config, config_hash=stage_hash)
    done = run.claim()
    if done is not None:
        return done
    device = next(target.parameters()).device
    was_training = target.training
    target.eval()
    try:
        train_x, held, counts = attacker_images(aug_cfg, target, generator, scenario)
        teacher = _logits(target, train_x)
        held_top1 = {s: _logits(target, x).argmax(1) for s, x in held.items()}
    finally:
        target.train(was_training)
    geometry = (int(target.num_classes), *target_geometry(target))
    members = []
    for i, arch in enumerate(aug_cfg.archs):
        t0 = time.perf_counter()
        seed = aug_cfg.seed + i
        model = distil_one(aug_cfg, arch, seed, train_x, teacher, geometry, device)
        seconds = time.perf_counter() - t0
        agreement = {s: float((_logits(model, x).argmax(1) == held_top1[s]).float().mean()) if x.shape[0] else None
                     for s, x in held.items()}
        rel = f"surrogate_{i}/model.pt"
        save_checkpoint(run.path / rel, classifier_state(model, arch, distillation={"seed": seed, **config}))
        members.append({"arch": arch, "seed": seed, "path": rel, "train_s": round(seconds, 2),
                        "agreement_held_out": agreement})
    summary = {"surrogates": members, "images": counts, "train_sha256": _sha256(train_x),
               "train_images": int(train_x.shape[0]), "threads": torch.get_num_threads()}
    write_json(run.path / SUMMARY, summary)
    return run.finish(summary, summary=SUMMARY, **{f"surrogate_{i}": m["path"] for i, m in enumerate(members)})


def load_surrogates(out_dir: str | Path, map_location="cpu") -> list[nn.Module]:
    """The surrogates distill_surrogates wrote to out_dir (eval mode, frozen), in the order of their archs."""
    out_dir = Path(out_dir)
    path = out_dir / SUMMARY
    if not path.exists():
        raise UserInputError(f"{out_dir} holds no surrogates ({SUMMARY} is missing): distil them first")
    return [load_classifier(out_dir / m["path"], map_location) for m in read_json(path)["surrogates"]]
