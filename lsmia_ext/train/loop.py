"""train_classifier: label-smoothing training of one classifier, resumable, single process or torchrun DDP.

Resumability: every finished epoch writes RUN_DIR/checkpoint.pt (model, optimiser, LR scheduler, epoch,
per-epoch metrics, wall time). All randomness inside an epoch (shuffle, augmentation, dropout) is seeded
from (seed, epoch[, rank]), so a run continued from epoch e draws exactly what an uninterrupted run draws
in epoch e; no generator state needs saving. The run directory is a runio.RunDir: a finished run is returned
as is, a directory of another config is refused; a directory written before run.json existed is read through
its metrics.json ("config_hash", "final") and config.yaml.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml
from tqdm.auto import tqdm  # tqdm.write: epoch lines that do not break a bar

from .. import dist
from ..data import BatchAugment, load_scenario
from ..defenses import PrepareContext, build_defense
from ..models import MODEL_FILE, build_model, classifier_state
from ..ops import LabelSmoothingCrossEntropy
from ..runio import RECORD, RunDir, load_checkpoint, read_json, save_checkpoint, write_json
from ..progress import progress_bar
from .alpha_schedule import AlphaSchedule
from .batches import epoch_seed, iterate_batches, rank_indices
from .config import RUNTIME_FIELDS, TrainConfig
from .evaluate import evaluate_classifier
from .optimizers import build_optimizer, build_scheduler
from .pretrain import pretrain

METRICS_FILE = "metrics.json"
EpochHook = Callable[[int, dict], None]


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but torch sees no GPU; use device: auto or cpu")
    return dist.local_device(cfg.device)


def _legacy_record(out_dir: Path) -> Optional[dict]:
    """The record of a run directory written before run.json: metrics.json {"config_hash", "final"} and
    config.yaml (the resolved config)."""
    metrics = out_dir / METRICS_FILE
    if not metrics.exists():
        return None
    old = read_json(metrics)
    config = out_dir / "config.yaml"
    return {"kind": "train", "config_hash": old.get("config_hash"), "finished": bool(old.get("final")),
            "result": old.get("final"), "config": yaml.safe_load(config.read_text()) if config.exists() else None}


def run_dir(cfg: TrainConfig, out_dir: str | Path) -> RunDir:
    return RunDir(out_dir, "train", cfg.model_dump(mode="json"), cfg.run_hash(), resumable=tuple(RUNTIME_FIELDS),
                  legacy=_legacy_record)


def _train_epoch(model, loss_fn, optimizer, data, indices, cfg: TrainConfig, device, augment, epoch, desc,
                 defense, inner):
    """One pass over this rank's indices; returns the sample-weighted mean loss over all ranks.
    `inner` is the model without the DDP wrapper (the defense reads its layers)."""
    model.train()
    torch.manual_seed(epoch_seed(cfg.seed, epoch, stream=2 + dist.rank()))  # dropout
    aug_gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, stream=1000 + dist.rank()))
    # the defense's own draws (erased boxes, trapdoor labels): the augmentation draws stay the undefended run's
    defense_gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, stream=2000 + dist.rank()))
    per_rank = cfg.batch_size // dist.world_size()
    total = torch.zeros(2, dtype=torch.float64)
    steps = len(indices) // per_rank
    for x, y in progress_bar(iterate_batches(data, indices, per_rank, cfg.num_workers), total=steps, desc=desc,
                     leave=False, disable=None if dist.is_main() else True):  # None: plain lines when not a TTY
        if augment.active:
            x = augment(x, aug_gen)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x, y = defense.train_batch(inner, x, y, defense_gen)
        if cfg.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(x)
        loss = defense.loss(loss_fn, logits.float(), y) + defense.extra_loss(inner, x, y, logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += torch.tensor([loss.item() * len(y), len(y)], dtype=torch.float64)
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
    return (total[0] / total[1]).item()


def _prepare_context(cfg: TrainConfig, device, scenario) -> PrepareContext:
    return PrepareContext(cfg, device, torch.Generator().manual_seed(epoch_seed(cfg.seed, 0, stream=4000)),
                          functools.partial(pretrain, cfg=cfg, allows_hflip=scenario.allows_hflip, device=device))


def _defense_entries(defense, prepared: dict) -> dict:
    """What a checkpoint keeps of the defense: its training state (Trap-MID's triggers) and the metrics of
    its preparation (TL-DMI's pretraining); nothing for defenses that have neither (old checkpoints as before)."""
    state = defense.state_dict()
    return {**({"defense_state": state} if state else {}), **({"prepared": prepared} if prepared else {})}


def _sync_buffers(model: torch.nn.Module) -> None:
    """Gives every rank rank 0's BatchNorm statistics (DDP syncs them only at the next forward), so that the
    sharded evaluation scores the model that rank 0 saves."""
    if dist.world_size() > 1:
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)


def _check_world(cfg: TrainConfig, n_train: int) -> None:
    world = dist.world_size()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of ranks {world}")
    if n_train < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n_train} private training images")


def _accuracy(model, dataset, cfg: TrainConfig, device) -> float:
    return evaluate_classifier(model, dataset, cfg.eval_batch_size, device, cfg.bf16, cfg.model.channels_last)["test_acc"]


def train_classifier(cfg: TrainConfig, out_dir: str | Path, on_epoch_end: Optional[EpochHook] = None) -> dict:
    """Trains (or resumes, or returns) the run in out_dir; returns the final metrics.

    Writes RUN_DIR/model.pt ({"model", "arch", ...}), metrics.json (per epoch and final), run.json
    (the record: resolved config, finished, final metrics), data_manifest.json and manifest.json. `on_epoch_end(epoch, metrics)` runs after the
    epoch's checkpoint is written (a test hook to interrupt a run, or a progress callback).
    """
    run, run_hash = run_dir(cfg, out_dir), cfg.run_hash()
    out_dir = run.path
    device = _device(cfg)
    dist.init(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    done = dist.broadcast_object(run.claim() if dist.is_main() else None)
    if done is not None:
        return done

    scenario = load_scenario(cfg.data)
    _check_world(cfg, len(scenario.private_train))
    torch.manual_seed(cfg.seed)
    defense = build_defense(cfg.defense)
    model = defense.wrap(build_model(cfg.model.name, scenario.num_classes, scenario.channels, scenario.image_size,
                                     pretrained=cfg.model.pretrained)).to(device)
    ckpt_path = run.checkpoint
    # once per fresh run (TL-DMI pretrains on the public split here); a resumed run restores the state instead
    prepared = {} if ckpt_path.exists() else defense.prepare(model, scenario, _prepare_context(cfg, device, scenario))
    defense.attach(model)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    start, history, elapsed = 0, [], 0.0
    if ckpt_path.exists():  # run.claim() checked that the directory is this config's
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, history, elapsed = ckpt["epoch"], ckpt["history"], ckpt["elapsed_s"]
        prepared = ckpt.get("prepared", {})
        if ckpt.get("defense_state"):
            defense.load_state_dict(ckpt["defense_state"])
    elif dist.is_main():
        scenario.write_manifest(out_dir)
    net = model
    if dist.world_size() > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    loss_fn = LabelSmoothingCrossEntropy(0.0)
    schedule = AlphaSchedule(cfg.loss.alpha, cfg.loss.warmup, cfg.loss.ramp)
    augment = BatchAugment(cfg.augment, scenario.allows_hflip)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        loss_fn.alpha = schedule(epoch)
        lr = optimizer.param_groups[0]["lr"]
        indices = rank_indices(len(scenario.private_train), cfg.seed, epoch, dist.rank(), dist.world_size())
        train_loss = _train_epoch(net, loss_fn, optimizer, scenario.private_train, indices, cfg, device, augment,
                                  epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", defense=defense, inner=model)
        scheduler.step()
        _sync_buffers(model)
        row = {"epoch": epoch, "alpha": loss_fn.alpha, "lr": lr, "train_loss": train_loss,
               **evaluate_classifier(model, scenario.private_test, cfg.eval_batch_size, device, cfg.bf16,
                                     cfg.model.channels_last)}
        if len(scenario.private_val):  # what choices are made on; test is recorded, not chosen on
            row["val_acc"] = _accuracy(model, scenario.private_val, cfg, device)
        row["wall_s"] = time.perf_counter() - t0
        elapsed += row["wall_s"]
        history.append(row)
        if dist.is_main():
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                                        "history": history, "elapsed_s": elapsed, "config_hash": run_hash,
                                        **_defense_entries(defense, prepared)})
            write_json(out_dir / METRICS_FILE, {"config_hash": run_hash, "epochs": history, "final": None})
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} alpha {row['alpha']:+.4f} loss {train_loss:.4f} "
                       f"acc {row['test_acc']:.4f} nll {row['test_nll']:.4f} ece {row['ece']:.4f} "
                       f"({row['wall_s']:.1f} s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        dist.barrier()

    final = {k: history[-1][k] for k in ("test_acc", "test_nll", "ece", "train_loss", "alpha", "val_acc")
             if k in history[-1]}
    # training accuracy without augmentation: how close to convergence the model got (the paper: ~100 %)
    final["train_acc"] = _accuracy(model, scenario.private_train, cfg, device)
    final.update(prepared)
    final.update(defense.final_metrics(model, scenario, cfg, device))
    final.update(epochs=cfg.epochs, wall_s=elapsed, world_size=dist.world_size(),
                 num_classes=scenario.num_classes, class_names=scenario.class_names)
    if dist.is_main():
        save_checkpoint(out_dir / MODEL_FILE, classifier_state(model, cfg.model.name, config_hash=run_hash,
                                                               metrics=final, defense=cfg.defense.model_dump(mode="json"),
                                                               **_defense_entries(defense, {})))
        write_json(out_dir / METRICS_FILE, {"config_hash": run_hash, "epochs": history, "final": final})
        run.finish(final, model=MODEL_FILE, metrics=METRICS_FILE, config=RECORD)
        ckpt_path.unlink(missing_ok=True)
    dist.barrier()
    return final
