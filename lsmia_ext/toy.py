"""`lsmia toy --out DIR`: the paper's 2D study of how label smoothing shapes the attack landscape
(PAPER.md section 6).

Three Gaussian blobs; one small MLP per smoothing factor alpha (same data, same initial weights);
then a model-inversion "attack" in the input plane: gradient descent on CE for the target class from a
fixed start until the model is confident. The paper's finding: with positive LS the path converges fast
and ends near the class's training points; with negative LS it stalls or ends far away.

Speed: the three MLPs are trained as one batched network (weights stacked along a leading alpha axis,
one autograd graph per step), and the 10,000-step attack runs on the eval-mode networks folded into
plain affine maps with a hand-written input gradient, so a step is a handful of tiny tensor ops for all
alphas together instead of a Python-level autograd pass per alpha.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

CENTRES = ((0.0, -10.0), (-10.0, 10.0), (10.0, 10.0))
BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # torch.nn.BatchNorm1d's default, for the running statistics used at attack time


@dataclass
class ToySettings:
    alphas: tuple[float, ...] = (0.0, 0.05, -0.05)
    n_points: int = 500
    std: float = 1.6
    seed: int = 17
    hidden: int = 20
    train_steps: int = 5000
    train_lr: float = 1e-3
    momentum: float = 0.9
    target_class: int = 2
    start: tuple[float, float] = (-3.0, -10.0)
    attack_lr: float = 0.1
    max_attack_steps: int = 10_000
    stop_confidence: float = 0.95
    extent: float = 15.0
    grid: int = 241

    def check(self) -> None:
        for a in self.alphas:  # checked up front (fused_ls_ce would only refuse it after the first training)
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a > 1:
                raise ValueError(f"alphas: each must be a finite number <= 1, got {a!r}")
        if not self.alphas:
            raise ValueError("alphas must name at least one smoothing factor")
        for name in ("n_points", "hidden", "train_steps", "max_attack_steps", "grid"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.target_class < len(CENTRES):
            raise ValueError(f"target_class must be in [0, {len(CENTRES)}), got {self.target_class}")
        if not 0 < self.stop_confidence < 1:
            raise ValueError(f"stop_confidence must be in (0, 1), got {self.stop_confidence}")


def make_blobs(n_points: int, std: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's three blobs, drawn with scikit-learn's make_blobs (which the seed 17 refers to)."""
    from sklearn.datasets import make_blobs as sk_blobs

    x, y = sk_blobs(n_samples=n_points, centers=list(CENTRES), cluster_std=std, random_state=seed)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


class StackedMLP(nn.Module):
    """A copies of Linear(2,H)-BN-ReLU-Linear(H,H)-BN-ReLU-Linear(H,K, no bias), weights stacked on a
    leading axis so all copies train in one pass. Every copy starts from the same torch-default init.

    `forward` is differentiable by autograd; `backward_from_logits` is the same gradient written by hand,
    which makes a training step ~5x cheaper on these tiny tensors (autograd bookkeeping dominates)."""

    def __init__(self, copies: int, hidden: int, classes: int, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            l1, l2, l3 = nn.Linear(2, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, classes, bias=False)

        def stack(t: torch.Tensor) -> nn.Parameter:  # Linear weights stored transposed: x @ w
            t = t.detach().T if t.dim() == 2 else t.detach()
            return nn.Parameter(t.unsqueeze(0).repeat(copies, *([1] * t.dim())).contiguous())

        self.w1, self.b1, self.w2, self.b2, self.w3 = (stack(t) for t in (l1.weight, l1.bias, l2.weight, l2.bias, l3.weight))
        self.g1, self.g2 = (nn.Parameter(torch.ones(copies, hidden)) for _ in range(2))
        self.beta1, self.beta2 = (nn.Parameter(torch.zeros(copies, hidden)) for _ in range(2))
        for i in (1, 2):
            self.register_buffer(f"mean{i}", torch.zeros(copies, hidden))
            self.register_buffer(f"var{i}", torch.ones(copies, hidden))
        self._cache: dict = {}

    def _bn(self, h: torch.Tensor, i: int) -> torch.Tensor:
        mean, var = getattr(self, f"mean{i}"), getattr(self, f"var{i}")
        if self.training:  # batch statistics, as BatchNorm1d: biased for normalising, unbiased for running
            mu = h.mean(dim=1)
            v = (h - mu[:, None]).square().mean(dim=1)  # torch.var on this strided layout is ~10x slower
            with torch.no_grad():
                n = h.shape[1]
                mean.lerp_(mu, BN_MOMENTUM)
                var.lerp_(v * n / max(n - 1, 1), BN_MOMENTUM)
        else:
            mu, v = mean, var
        inv_std = (v + BN_EPS).rsqrt()
        xhat = (h - mu[:, None]) * inv_std[:, None]
        self._cache[f"xhat{i}"], self._cache[f"inv_std{i}"] = xhat, inv_std
        return xhat * getattr(self, f"g{i}")[:, None] + getattr(self, f"beta{i}")[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (A, N, 2) -> logits (A, N, K)."""
        h1 = torch.relu(self._bn(torch.baddbmm(self.b1[:, None], x, self.w1), 1))
        h2 = torch.relu(self._bn(torch.baddbmm(self.b2[:, None], h1, self.w2), 2))
        self._cache.update(x=x, h1=h1, h2=h2)
        return torch.bmm(h2, self.w3)

    def _bn_backward(self, dy: torch.Tensor, i: int) -> torch.Tensor:
        """Training-mode BN backward: sets the grads of g_i and beta_i, returns d/d(BN input)."""
        xhat, inv_std = self._cache[f"xhat{i}"], self._cache[f"inv_std{i}"]
        getattr(self, f"beta{i}").grad = dy.sum(dim=1)
        getattr(self, f"g{i}").grad = (dy * xhat).sum(dim=1)
        dxhat = dy * getattr(self, f"g{i}")[:, None]
        return inv_std[:, None] * (dxhat - dxhat.mean(dim=1, keepdim=True)
                                   - xhat * (dxhat * xhat).mean(dim=1, keepdim=True))

    @torch.no_grad()
    def backward_from_logits(self, dlogits: torch.Tensor) -> None:
        """Sets .grad of every parameter from d loss / d logits of the last training-mode forward."""
        c = self._cache
        self.w3.grad = torch.bmm(c["h2"].transpose(1, 2), dlogits)
        da2 = self._bn_backward(torch.bmm(dlogits, self.w3.transpose(1, 2)) * (c["h2"] > 0), 2)
        self.w2.grad = torch.bmm(c["h1"].transpose(1, 2), da2)
        self.b2.grad = da2.sum(dim=1)
        da1 = self._bn_backward(torch.bmm(da2, self.w2.transpose(1, 2)) * (c["h1"] > 0), 1)
        self.w1.grad = torch.bmm(c["x"].transpose(1, 2), da1)
        self.b1.grad = da1.sum(dim=1)

    @torch.no_grad()
    def folded(self) -> list[torch.Tensor]:
        """Eval-mode network as affine maps [W1, c1, W2, c2, W3]: BN folded into the linear layers."""
        s1 = self.g1 * (self.var1 + BN_EPS).rsqrt()
        s2 = self.g2 * (self.var2 + BN_EPS).rsqrt()
        return [self.w1 * s1[:, None], (self.b1 - self.mean1) * s1 + self.beta1,
                self.w2 * s2[:, None], (self.b2 - self.mean2) * s2 + self.beta2, self.w3.detach().clone()]


def smoothed_losses(logits: torch.Tensor, y: torch.Tensor, alphas) -> torch.Tensor:
    """Per-copy mean fused_ls_ce, copy i with smoothing alphas[i]: (A,)."""
    from .ops import fused_ls_ce

    return torch.stack([fused_ls_ce(logits[i], y, a) for i, a in enumerate(alphas)])


def train_models(x: torch.Tensor, y: torch.Tensor, s: ToySettings) -> tuple[StackedMLP, list[float]]:
    """Full-batch SGD with momentum (torch.optim.SGD), one copy per alpha, loss fused_ls_ce(alpha)."""
    model = StackedMLP(len(s.alphas), s.hidden, len(CENTRES), s.seed)
    opt = torch.optim.SGD(model.parameters(), lr=s.train_lr, momentum=s.momentum, foreach=True)
    xs = x.unsqueeze(0).expand(len(s.alphas), -1, -1).contiguous()
    model.train()
    for _ in range(s.train_steps):
        with torch.no_grad():
            logits = model(xs)
        logits.requires_grad_(True)
        # the loss's own gradient comes from the fused op's backward; the network's is hand-written
        (dlogits,) = torch.autograd.grad(smoothed_losses(logits, y, s.alphas).sum(), logits)
        model.backward_from_logits(dlogits)
        opt.step()
    model.eval()
    with torch.no_grad():
        losses = smoothed_losses(model(xs), y, s.alphas).tolist()
    return model, losses


def folded_logits(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits (A, N, K) of the folded eval-mode networks for points x (A, N, 2)."""
    w1, c1, w2, c2, w3 = params
    h = torch.relu(torch.baddbmm(c1[:, None], x, w1))
    h = torch.relu(torch.baddbmm(c2[:, None], h, w2))
    return torch.bmm(h, w3)


def input_grad_ce(params: list[torch.Tensor], x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(d CE(logits(x), target) / d x, softmax probabilities) for points x (A, N, 2), by hand:
    dCE/dlogits = p - onehot, then back through the two ReLU layers."""
    w1, c1, w2, c2, w3 = params
    a1 = torch.baddbmm(c1[:, None], x, w1)
    h1 = torch.relu(a1)
    a2 = torch.baddbmm(c2[:, None], h1, w2)
    h2 = torch.relu(a2)
    p = torch.bmm(h2, w3).softmax(dim=-1)
    g = p.clone()
    g[..., target] -= 1
    g = torch.bmm(g, w3.transpose(1, 2)) * (a2 > 0)
    g = torch.bmm(g, w2.transpose(1, 2)) * (a1 > 0)
    return torch.bmm(g, w1.transpose(1, 2)), p


def attack(params: list[torch.Tensor], s: ToySettings) -> dict:
    """Gradient descent on the input from s.start, one path per model, each stopping on its own once
    its target confidence exceeds s.stop_confidence. Returns paths (A, T+1, 2), steps (A,), confidences (A,)."""
    copies = params[0].shape[0]
    x = torch.tensor(s.start, dtype=torch.float32).expand(copies, 1, 2).clone()
    path = torch.empty(copies, s.max_attack_steps + 1, 2)
    steps = torch.full((copies,), s.max_attack_steps, dtype=torch.int64)
    active = torch.ones(copies, dtype=torch.bool)
    for t in range(s.max_attack_steps + 1):
        path[:, t] = x[:, 0]
        grad, p = input_grad_ce(params, x, s.target_class)
        done = p[:, 0, s.target_class] > s.stop_confidence
        newly = done & active
        if newly.any():
            steps[newly] = t
            active &= ~done
            if not active.any():
                break
        if t == s.max_attack_steps:
            break
        x = x - s.attack_lr * grad * active[:, None, None]
    # after a path stops it stays put: fill its tail with the final point for plotting
    for i in range(copies):
        path[i, steps[i] + 1:] = path[i, steps[i]]
    final = path[torch.arange(copies), steps]
    conf = folded_logits(params, final[:, None]).softmax(-1)[:, 0, s.target_class]
    return {"paths": path[:, :int(steps.max()) + 1], "steps": steps, "final": final, "confidence": conf,
            "converged": conf > s.stop_confidence}


def run_study(s: ToySettings) -> dict:
    """Trains, attacks and measures; returns JSON-ready results plus tensors for the figure."""
    s.check()
    t0 = time.perf_counter()
    x, y = make_blobs(s.n_points, s.std, s.seed)
    model, losses = train_models(x, y, s)
    t_train = time.perf_counter() - t0
    params = model.folded()
    res = attack(params, s)
    t_attack = time.perf_counter() - t0 - t_train
    with torch.no_grad():
        train_pred = folded_logits(params, x.expand(len(s.alphas), -1, -1)).argmax(-1)
    cls_pts = x[y == s.target_class]
    rows = []
    for i, a in enumerate(s.alphas):
        rows.append({
            "alpha": a,
            "steps": int(res["steps"][i]),
            "converged": bool(res["converged"][i]),
            "final_confidence": float(res["confidence"][i]),
            "final_point": [float(v) for v in res["final"][i]],
            "distance_to_class": float((cls_pts - res["final"][i]).norm(dim=1).min()),
            "distance_to_class_centre": float((torch.tensor(CENTRES[s.target_class]) - res["final"][i]).norm()),
            "train_acc": float((train_pred[i] == y).float().mean()),
            "final_train_loss": losses[i],
        })
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.__dict__.items()}
    return {"settings": settings, "results": rows,
            "timings": {"train_s": round(t_train, 3), "attack_s": round(t_attack, 3)},
            "_tensors": {"x": x, "y": y, "params": params, "paths": res["paths"]}}


def confidence_maps(params: list[torch.Tensor], s: ToySettings) -> torch.Tensor:
    """Softmax confidence of the target class on a grid over [-extent, extent]^2, (A, grid, grid),
    rows running along the second coordinate."""
    ticks = torch.linspace(-s.extent, s.extent, s.grid)
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    with torch.no_grad():
        probs = folded_logits(params, pts.expand(params[0].shape[0], -1, -1)).softmax(-1)
    return probs[..., s.target_class].reshape(-1, s.grid, s.grid)


def draw(study: dict, s: ToySettings):
    """One panel per alpha: target-class confidence map, training points, attack path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tens = study["_tensors"]
    maps = confidence_maps(tens["params"], s)
    n = len(s.alphas)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4), squeeze=False)
    colours = ("tab:blue", "tab:orange", "tab:green")
    for i, (ax, row) in enumerate(zip(axes[0], study["results"])):
        im = ax.imshow(maps[i].numpy(), origin="lower", extent=(-s.extent, s.extent, -s.extent, s.extent),
                       cmap="viridis", vmin=0, vmax=1)
        for c in range(len(CENTRES)):
            pts = tens["x"][tens["y"] == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=4, c=colours[c], edgecolors="none", label=f"class {c}")
        path = tens["paths"][i, :row["steps"] + 1]
        ax.plot(path[:, 0], path[:, 1], color="red", lw=1.6)
        ax.plot(*s.start, marker="o", color="red", ms=6)
        ax.plot(*row["final_point"], marker="x", color="white", ms=9, mew=2.5)
        state = "converged" if row["converged"] else "stopped"
        ax.set_title(f"alpha = {row['alpha']:+g}: {state} after {row['steps']} steps\n"
                     f"confidence {row['final_confidence']:.3f}, distance to class {row['distance_to_class']:.2f}",
                     fontsize=9)
        ax.set_xlim(-s.extent, s.extent)
        ax.set_ylim(-s.extent, s.extent)
        ax.set_aspect("equal")
    axes[0][0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=f"confidence of class {s.target_class}")
    return fig


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="writes DIR/toy.png and DIR/toy.json")
    parser.add_argument("--seed", type=int, default=17, help="data and initial-weight seed (paper: 17)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.05, -0.05],
                        help="label smoothing factors, one model each (paper: 0 0.05 -0.05)")
    parser.add_argument("--train-steps", type=int, default=5000)
    parser.add_argument("--max-attack-steps", type=int, default=10_000)


def run(args) -> int:
    from .runio import check_out_dir, save_figure, update_manifest, write_json

    out = check_out_dir(args.out)  # before minutes of work
    torch.set_num_threads(min(torch.get_num_threads(), 2))  # tiny tensors: more threads only add overhead
    s = ToySettings(alphas=tuple(args.alphas), seed=args.seed, train_steps=args.train_steps,
                    max_attack_steps=args.max_attack_steps)
    study = run_study(s)
    save_figure(out / "toy.png", draw(study, s))
    study.pop("_tensors")
    write_json(out / "toy.json", study)
    update_manifest(out, toy_figure="toy.png", toy_results="toy.json")
    print(f"{'alpha':>7} {'steps':>6} {'conf':>6} {'dist':>7}  (train {study['timings']['train_s']} s, "
          f"attack {study['timings']['attack_s']} s)")
    for r in study["results"]:
        print(f"{r['alpha']:>7g} {r['steps']:>6d} {r['final_confidence']:>6.3f} {r['distance_to_class']:>7.2f}")
    return 0
