"""run_attack: batches of classes, resume from RUN_DIR/partial/, sharding over torchrun ranks.

Each batch of `classes_per_batch` classes is seeded from (seed, batch index) alone, so a batch gives
the same images whether it runs first or after a restart, on rank 0 or on rank 3. Every rank writes
its finished batches to RUN_DIR/partial/batch_XXX.pt; rank 0 waits for all of them and assembles
results.pt, attack.json and the grids (run_dir must be shared by the ranks, as torchrun jobs are).
The run directory is a runio.RunDir: a finished attack of the same settings and classes is returned as is,
a directory of another attack is refused (one written before run.json existed resumes from partial/).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import dist
from ..config import config_hash
from ..defenses.mid import sample_at_eval
from ..errors import UserInputError
from ..progress import progress_bar
from ..ops import LatentAdam
from ..runio import RECORD, RunDir, load_checkpoint, save_checkpoint
from . import gmi, miface, ppa  # noqa: F401  (each registers its attack in ATTACKS)
from .config import ATTACKS, AttackConfig
from .outputs import write_run
from .results import RESULT_KEYS
from .views import check_compatible, target_geometry


def check_classes(classes: Sequence[int] | torch.Tensor | None, num_classes: int) -> list[int]:
    """The attacked class ids (default: all), validated against the target's label space."""
    if classes is None:
        return list(range(num_classes))
    ids = classes.tolist() if isinstance(classes, torch.Tensor) else list(classes)
    if not ids:
        raise ValueError("empty class list: give at least one class id to attack")
    for c in ids:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < num_classes:
            raise ValueError(f"unknown class id {c!r}: the target has {num_classes} classes "
                             f"(ids 0..{num_classes - 1})")
    if len(set(ids)) != len(ids):
        raise ValueError(f"class ids must be distinct; got {ids}")
    return [int(c) for c in ids]


def batch_seed(seed: int, index: int, stream: int = 0) -> int:
    """A well-mixed seed for batch `index`, independent of any global RNG stream; `stream` > 0 gives
    independent seeds for other uses of the same batch (stream 0 is the attack's own)."""
    entropy = [seed & 0xFFFFFFFF, index] + ([stream] if stream else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


POOL, NOISE = 1, 2  # seed streams: target noise while scoring the candidate pool / attacking batch i


def _target_noise(cfg: AttackConfig, target: nn.Module, index: int, stream: int) -> None:
    """With cfg.target_sampling, (re)seeds the target's MID bottleneck noise for one unit of work, so a
    batch samples the same noise whether it runs first, after a restart or on another rank."""
    if cfg.target_sampling:
        sample_at_eval(target, batch_seed(cfg.seed, index, stream))


@contextmanager
def frozen(*modules: nn.Module | None):
    """Eval mode and no parameter gradients for the duration of the attack; restored afterwards."""
    modules = [m for m in modules if m is not None]
    params = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    modes = [(m, m.training) for m in modules]
    for m in modules:
        m.eval().requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in params:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)


def _check_models(cfg: AttackConfig, target: nn.Module, generator: nn.Module | None) -> None:
    channels, _ = target_geometry(target)
    if not hasattr(target, "num_classes"):
        raise ValueError("the target must expose num_classes (see lsmia_ext.models)")
    if cfg.needs_prior:
        if generator is None:
            raise ValueError(f"attack {cfg.attack!r} needs a generator prior (--prior)")
        check_compatible(int(generator.channels), channels)


def run_attack(cfg: AttackConfig, target: nn.Module, generator: nn.Module | None, out_dir: str | Path,
               classes: Sequence[int] | None = None, discriminator: nn.Module | None = None,
               data_config=None, target_path: str | None = None, prior_path: str | None = None,
               surrogates: Sequence[nn.Module] = ()) -> dict:
    """Runs cfg.attack against `target` and writes RUN_DIR (results.pt, attack.json, grids/).

    Resumes from RUN_DIR/partial/ when it holds batches of the same attack; under torchrun the
    batches are sharded over ranks (rank r takes batches r, r + W, ...). Returns a summary dict.
    With cfg.augmentation, `surrogates` are the target's distilled surrogates (a study passes those of its
    own stage); none given, they are distilled into RUN_DIR/surrogates from data_config's public images.
    """
    t_start = time.perf_counter()
    _check_models(cfg, target, generator)
    if surrogates and cfg.augmentation is None:
        raise ValueError("surrogates were given but the attack config sets no augmentation: set augmentation "
                         "(archs, sources) or pass no surrogates")
    ids = check_classes(classes, int(target.num_classes))
    settings = cfg.model_dump(mode="json")
    if data_config is not None:
        settings["data"] = data_config.model_dump(mode="json") if hasattr(data_config, "model_dump") else dict(data_config)
    run = RunDir(out_dir, "attack", {"settings": settings, "classes": ids})
    out_dir = run.path
    done = dist.broadcast_object(run.claim() if dist.is_main() else None)
    if done is not None:
        return done
    device = dist.local_device(cfg.device)
    for m in (target, generator, discriminator):
        if m is not None:
            m.to(device)
    surrogate_record = None
    if cfg.augmentation is not None and not surrogates:
        surrogates, surrogate_record = _own_surrogates(cfg, target, generator, data_config, out_dir / "surrogates")
    surrogates = [m.to(device) for m in surrogates]
    if any(target_geometry(m) != target_geometry(target) for m in surrogates):
        raise ValueError(f"surrogates must take the target's input (channels, size) {target_geometry(target)}; got "
                         f"{[target_geometry(m) for m in surrogates]}")
    batches = [ids[i:i + cfg.classes_per_batch] for i in range(0, len(ids), cfg.classes_per_batch)]
    fingerprints = [config_hash({"settings": settings, "batch": i, "classes": b}) for i, b in enumerate(batches)]
    mine = list(range(dist.rank(), len(batches), dist.world_size()))
    todo = [i for i in mine if not _finished(out_dir, i, fingerprints[i])]

    extra_timings = {}
    # torch.optim imports torch._dynamo when the first optimiser is built (seconds on a busy CPU);
    # pay that before the timed stages so images x steps per second measures the steps themselves.
    LatentAdam([torch.zeros(1, 1, requires_grad=True)], lr=1e-3, betas=(0.9, 0.999))
    sampled = sample_at_eval(target, None)  # number of MID bottlenecks; z = mu unless target_sampling
    try:
        with frozen(target, generator, discriminator, *surrogates):
            _run_batches(cfg, target, generator, discriminator, device, out_dir, batches, fingerprints, todo,
                         extra_timings, surrogates)
    finally:
        sample_at_eval(target, None)  # the caller gets its target back deterministic
    dist.barrier()
    summary = {"attack": cfg.attack, "classes": ids, "run_dir": str(out_dir), "resumed_batches": len(mine) - len(todo)}
    if not dist.is_main():
        return summary
    parts = [_load_part(out_dir, i, fingerprints[i]) for i in range(len(batches))]
    merged = {k: torch.cat([p.get(k, torch.empty(0)) for p in parts]) for k in RESULT_KEYS}  # older parts lack some keys
    timings = _timings(parts, extra_timings, time.perf_counter() - t_start)
    record = {"attack": cfg.attack, "settings": settings, "seed": cfg.seed, "classes": ids,
              "target": None if target_path is None else str(target_path),
              "prior": None if prior_path is None else str(prior_path),
              "world_size": dist.world_size(), "timings": timings,
              "target_sampling": {"on": cfg.target_sampling, "mid_bottlenecks": sampled},
              "options": cfg.options_record(),
              "surrogates": {"count": len(surrogates), "distilled_here": surrogate_record}}
    write_run(out_dir, merged, record)
    conf = merged["confidences"]
    summary.update(num_images=int(conf.numel()), mean_confidence=float(conf.mean()),
                   per_class_confidence={c: float(conf[merged["labels"] == c].mean()) for c in ids},
                   timings=timings, options=record["options"])
    run.finish(summary, config=RECORD)
    return summary


def _own_surrogates(cfg: AttackConfig, target: nn.Module, generator: nn.Module | None, data_config,
                    out_dir: Path) -> tuple[list[nn.Module], dict | None]:
    """The target's surrogates distilled by this attack (rank 0 distils, every rank loads): (models, summary)."""
    from .surrogates import distill_surrogates, load_surrogates

    summary = None
    if dist.is_main():
        summary = distill_surrogates(cfg.augmentation, target, generator, _scenario(data_config), out_dir)
    dist.barrier()
    return load_surrogates(out_dir), summary


def _scenario(data_config):
    """The target's data Scenario: its public images are what surrogates learn from, its private ones are
    what they must never see."""
    if data_config is None:
        raise UserInputError("augmentation: distilling surrogates needs the target's data config (data_config=, "
                             "read from the target's run directory by `lsmia attack`) or pass surrogates=")
    from ..config import validate
    from ..data import DataConfig, load_scenario

    data = data_config if isinstance(data_config, DataConfig) else validate(DataConfig, dict(data_config), "data")
    return load_scenario(data)


def _run_batches(cfg, target, generator, discriminator, device, out_dir, batches, fingerprints, todo, timings,
                 surrogates=()):
    """Attacks the batches `todo` and saves each to RUN_DIR/partial/ (PPA scores its candidate pool first)."""
    context = {"device": device, "discriminator": discriminator, "surrogates": surrogates}
    if cfg.attack == "ppa" and todo:
        _target_noise(cfg, target, 0, POOL)
        t0 = time.perf_counter()
        pool = ppa.candidate_pool(cfg, generator, cfg.seed, device)
        pool_conf, pool_score = ppa.score_pool(cfg, target, generator, pool, surrogates)
        context.update(pool=pool, pool_conf=pool_conf, pool_score=pool_score)
        timings["pool_scoring_s"] = time.perf_counter() - t0
    for i in progress_bar(todo, desc=f"{cfg.attack} batches (rank {dist.rank()})", disable=not todo, leave=False):
        rng = torch.Generator().manual_seed(batch_seed(cfg.seed, i))
        _target_noise(cfg, target, i, NOISE)
        cls = torch.tensor(batches[i], device=device)
        attack_batch = ATTACKS.get(cfg.attack).attack_batch
        result = attack_batch(cfg, target, generator=generator, classes=cls, rng=rng, **context)
        result.update(fingerprint=fingerprints[i], classes=batches[i])
        save_checkpoint(_partial(out_dir, i), result)


def _partial(out_dir: Path, index: int) -> Path:
    return out_dir / "partial" / f"batch_{index:03d}.pt"


def _finished(out_dir: Path, index: int, fingerprint: str) -> bool:
    """True when the batch is already on disk; an on-disk batch of a different attack is an error."""
    path = _partial(out_dir, index)
    if not path.exists():
        return False
    _load_part(out_dir, index, fingerprint)
    return True


def _load_part(out_dir: Path, index: int, fingerprint: str) -> dict:
    path = _partial(out_dir, index)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: a rank did not finish its batch of classes")
    part = load_checkpoint(path)
    if part.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} belongs to a different attack (other settings, classes or data); "
                         f"resume only with the same config, or choose a new --out directory")
    return part


def _timings(parts: list[dict], extra: dict, wall_s: float) -> dict:
    """Sums the per-batch timings; images x steps per second counts only the optimisation stage."""
    total: dict[str, float] = dict(extra)
    for part in parts:
        for key, value in part["timings"].items():
            total[key] = total.get(key, 0) + value
    if total.get("optimisation_s"):
        total["images_x_steps_per_s"] = total["image_steps"] / total["optimisation_s"]
    total["wall_s"] = wall_s
    return total
