"""GAN training of our prior on the public split: non-saturating loss, lazy R1, EMA generator, Adam.

Resumable: RUN_DIR/checkpoint.pt holds both networks, the EMA copy, optimiser and RNG states, so an
interrupted run continues exactly where it stopped. The run directory is a runio.RunDir: a finished run is
not retrained, raising train.steps in the same run directory continues training, a directory of another
config is refused; one written before run.json existed is read through its config.json and metrics.json.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import config_hash
from ..progress import progress_bar
from ..runio import RECORD, RunDir, load_checkpoint, read_json, save_checkpoint, write_json
from .config import PriorConfig
from .fid import (accuracy, category_shares, features, frechet, load_feature_net, save_feature_net,
                  train_feature_net)
from .grid import save_grid
from .networks import Discriminator, StyleGenerator
from .store import save_discriminator, save_generator

PUBLIC_SPLITS = ("public_train", "public_test")
# Keys that may change between runs in one directory without invalidating the checkpoint.
_RESUMABLE_KEYS = ("steps", "sample_every", "checkpoint_every", "num_threads")


def public_images(scenario, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The only door from data to the prior: public splits only (GMI protocol), never private ones."""
    if split not in PUBLIC_SPLITS:
        raise ValueError(f"the prior may only see public data; split {split!r} is not one of {PUBLIC_SPLITS}")
    images, labels = scenario.tensors(split)
    if len(images) == 0:
        raise ValueError("the scenario has no public images: set data.public_classes or data.public_dataset")
    return images, labels


def build_networks(cfg: PriorConfig, image_size: int, channels: int) -> tuple[StyleGenerator, Discriminator]:
    n = cfg.network
    g = StyleGenerator(image_size, channels, z_dim=n.z_dim, w_dim=n.w_dim, mapping_layers=n.mapping_layers,
                       channels_max=n.channels_max, channels_min=n.channels_min,
                       convs_per_level=n.convs_per_level)
    d = Discriminator(image_size, channels, channels_max=n.d_channels_max, channels_min=n.d_channels_min)
    return g, d


def _identity_hash(cfg: PriorConfig) -> str:
    data = cfg.hashed_dump()
    for key in _RESUMABLE_KEYS:
        data["train"].pop(key)
    return config_hash(data)


def _legacy_record(out: Path) -> dict | None:
    """The record of a prior run directory written before run.json: config.json {"identity_hash", "config"}
    and metrics.json ({..., "finished": true} once done)."""
    if not (out / "config.json").exists():
        return None
    old = read_json(out / "config.json")
    metrics = read_json(out / "metrics.json") if (out / "metrics.json").exists() else {}
    return {"kind": "prior", "config_hash": old.get("identity_hash"), "config": old.get("config"),
            "finished": bool(metrics.get("finished")), "result": metrics}


def run_dir(cfg: PriorConfig, out_dir: str | Path) -> RunDir:
    """Only train.steps/sample_every/checkpoint_every/num_threads may change when resuming; a finished
    run with more train.steps continues training."""
    return RunDir(out_dir, "prior", cfg.model_dump(mode="json"), _identity_hash(cfg),
                  resumable=tuple(f"train.{k}" for k in _RESUMABLE_KEYS), extends=("train.steps",),
                  legacy=_legacy_record)


def _ema_beta(cfg: PriorConfig, images_seen: int) -> float:
    t = cfg.train
    half_life = t.ema_half_life_images
    if t.ema_rampup > 0:
        half_life = min(half_life, images_seen * t.ema_rampup)
    return 0.5 ** (t.batch_size / max(half_life, 1e-8))


@torch.no_grad()
def _update_ema(ema: StyleGenerator, g: StyleGenerator, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), g.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), g.buffers()):
        b_ema.copy_(b)


def _d_step(g, d, opt_d, reals, z, do_r1: bool, cfg: PriorConfig) -> tuple[float, float]:
    t = cfg.train
    with torch.no_grad():
        fakes = g.synthesis(g.mapping(z), clamp=False)  # unclamped, as the generator step's fakes
    reals = reals.detach().requires_grad_(do_r1)
    logits_real, logits_fake = d(reals), d(fakes)
    loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
    r1 = torch.zeros(())
    if do_r1:
        (grad,) = torch.autograd.grad(logits_real.sum(), reals, create_graph=True)
        r1 = grad.square().sum(dim=(1, 2, 3)).mean()
        loss = loss + (t.r1_gamma / 2) * r1 * t.r1_interval  # lazy: scaled by how rarely it runs
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss.item(), r1.item()


def _g_step(g: StyleGenerator, d, opt_g, z, cfg: PriorConfig) -> float:
    w = g.mapping_net(z)
    g.track_w_avg(w, cfg.train.w_avg_beta)
    fakes = g.synthesis(w, clamp=False)  # the discriminator sees the linear output, as in StyleGAN2
    d.requires_grad_(False)  # no discriminator weight gradients needed here
    loss = F.softplus(-d(fakes)).mean()  # non-saturating generator loss
    d.requires_grad_(True)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return loss.item()


def _fid_extractor(out: Path, scenario, reals, labels, cfg: PriorConfig):
    path = out / "fid_features.pt"
    if path.exists():
        return load_feature_net(path)
    net = train_feature_net(reals, labels, scenario.num_public_classes, cfg.fid.extractor_epochs,
                            cfg.fid.extractor_width, seed=cfg.seed)
    test_x, test_y = public_images(scenario, "public_test")
    save_feature_net(path, net, accuracy(net, test_x, test_y))
    return net


def measure_fid(g: StyleGenerator, net, test_feats: torch.Tensor, cfg: PriorConfig) -> float:
    fakes = g.sample(cfg.fid.num_samples, seed=cfg.seed + 12345, truncation_psi=cfg.fid.truncation_psi)
    return frechet(features(net, fakes), test_feats)


def train_prior(cfg: PriorConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Trains (or resumes, or returns) the prior of `cfg` in out_dir; returns the final metrics."""
    run = run_dir(cfg, out_dir)
    out = run.path
    done = run.claim()
    if done is not None:
        return done
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    from ..data import load_scenario

    scenario = load_scenario(cfg.data)
    scenario.write_manifest(out)
    reals, labels = public_images(scenario, "public_train")

    torch.manual_seed(cfg.seed)
    g, d = build_networks(cfg, scenario.image_size, scenario.channels)
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=t.lr_g, betas=t.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=t.lr_d, betas=t.betas)
    data_rng = torch.Generator().manual_seed(cfg.seed + 1)
    z_rng = torch.Generator().manual_seed(cfg.seed + 2)
    grid_z = torch.randn(64, g.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 3))

    net = _fid_extractor(out, scenario, reals, labels, cfg)
    test_feats = features(net, public_images(scenario, "public_test")[0])
    ckpt_path = run.checkpoint
    if ckpt_path.exists():
        s = load_checkpoint(ckpt_path)
        g.load_state_dict(s["g"]), d.load_state_dict(s["d"]), ema.load_state_dict(s["ema"])
        opt_g.load_state_dict(s["opt_g"]), opt_d.load_state_dict(s["opt_d"])
        data_rng.set_state(s["data_rng"]), z_rng.set_state(s["z_rng"])
        step, seconds, history, fid_init = s["step"], s["seconds"], s["history"], s["fid_at_init"]
        cpu_seconds = s["cpu_seconds"]
        if step > t.steps:
            raise ValueError(f"{out} already holds {step} training steps, more than train.steps={t.steps}; "
                             "raise train.steps or use a new --out directory")
    else:
        step, seconds, cpu_seconds, history = 0, 0.0, 0.0, []
        fid_init = measure_fid(ema, net, test_feats, cfg)

    def checkpoint():
        save_checkpoint(ckpt_path, {"g": g.state_dict(), "d": d.state_dict(), "ema": ema.state_dict(),
                                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                                    "data_rng": data_rng.get_state(), "z_rng": z_rng.get_state(),
                                    "step": step, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                    "history": history, "fid_at_init": fid_init})

    bar = progress_bar(total=t.steps, initial=step, desc="train-prior", disable=not progress, dynamic_ncols=True)
    sums = {"loss_d": 0.0, "loss_g": 0.0, "r1": 0.0}
    count = r1_count = 0
    while step < t.steps:
        start, cpu_start = time.perf_counter(), time.process_time()
        batch = reals[torch.randint(len(reals), (t.batch_size,), generator=data_rng)]
        do_r1 = t.r1_gamma > 0 and step % t.r1_interval == 0
        loss_d, r1 = _d_step(g, d, opt_d, batch, torch.randn(t.batch_size, g.z_dim, generator=z_rng), do_r1, cfg)
        loss_g = _g_step(g, d, opt_g, torch.randn(t.batch_size, g.z_dim, generator=z_rng), cfg)
        step += 1
        _update_ema(ema, g, _ema_beta(cfg, step * t.batch_size))
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu_start
        sums["loss_d"] += loss_d
        sums["loss_g"] += loss_g
        sums["r1"] += r1
        count, r1_count = count + 1, r1_count + int(do_r1)
        if step == 1 or step % t.sample_every == 0 or step == t.steps:
            history.append({"step": step, "loss_d": sums["loss_d"] / count, "loss_g": sums["loss_g"] / count,
                            "r1": sums["r1"] / max(r1_count, 1),  # mean squared real-image gradient norm
                            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2)})
            bar.set_postfix(loss_d=f"{history[-1]['loss_d']:.3f}", loss_g=f"{history[-1]['loss_g']:.3f}")
            sums, count, r1_count = dict.fromkeys(sums, 0.0), 0, 0
            with torch.no_grad():
                save_grid(out / "samples" / f"step_{step:05d}.png", ema(grid_z))
        if step % t.checkpoint_every == 0 or step == t.steps:
            checkpoint()
        bar.update(1)
    bar.close()
    shares = _category_coverage(scenario, ema, net, cfg)
    return _finish(run, cfg, ema, d, net, test_feats, reals, step, seconds, cpu_seconds, history, fid_init, shares)


def _category_coverage(scenario, ema, net, cfg: PriorConfig) -> dict:
    """Per-category share of prior samples against real public test images, and the worst ratio of the two
    (1 = the prior draws every category as often as the data holds it; 0 = a category it cannot draw)."""
    names = scenario.category_names
    fakes = ema.sample(cfg.fid.num_samples, seed=cfg.seed + 12345, truncation_psi=cfg.fid.truncation_psi)
    fake = category_shares(net, fakes, scenario.public_categories, names)
    real = category_shares(net, public_images(scenario, "public_test")[0], scenario.public_categories, names)
    worst = min((fake[c] / real[c] for c in real if real[c] > 0), default=None)
    return {"category_share_prior": fake, "category_share_public_test": real, "category_share_min_ratio": worst}


def _finish(run: RunDir, cfg, ema, d, net, test_feats, reals, step, seconds, cpu_seconds, history, fid_init,
            shares: dict) -> dict:
    out = run.path
    save_generator(out / "generator.pt", ema, step)
    save_discriminator(out / "discriminator.pt", d)
    n = min(cfg.fid.num_samples, len(reals))
    pick = torch.randperm(len(reals), generator=torch.Generator().manual_seed(cfg.seed + 4))[:n]
    metrics = {
        "fid": measure_fid(ema, net, test_feats, cfg),
        "fid_at_init": fid_init,
        # floor: the same number of real public train images against the same held-out images
        "fid_public_train_vs_test": frechet(features(net, reals[pick]), test_feats),
        "fid_extractor": "FidFeatureNet (3 conv + 128-d ReLU features) trained on public_train, "
                         "RUN_DIR/fid_features.pt",
        "fid_extractor_test_accuracy": load_checkpoint(out / "fid_features.pt")["test_accuracy"],
        "fid_num_samples": cfg.fid.num_samples, "fid_truncation_psi": cfg.fid.truncation_psi,
        "steps": step, "images_seen": step * cfg.train.batch_size, "train_seconds": round(seconds, 2),
        # CPU time of the training steps (all threads): on a shared machine closer to the uncontended cost
        "train_cpu_seconds": round(cpu_seconds, 2),
        **shares, "history": history, "finished": True,
    }
    write_json(out / "metrics.json", metrics)
    samples = sorted((out / "samples").glob("step_*.png"))
    return run.finish(metrics, generator="generator.pt", discriminator="discriminator.pt", checkpoint="checkpoint.pt",
                      fid_features="fid_features.pt", metrics="metrics.json", config=RECORD,
                      **({"last_samples": str(samples[-1].relative_to(out))} if samples else {}))
