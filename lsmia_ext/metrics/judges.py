"""Who decides that an attack image shows the attacked identity: the judges, per class, with an interval.

A judge maps attack images to class scores; an image counts as a success when the attacked class is its
top-1 (top-5) class. Judges:
- eval_model (primary: `acc1` keeps its meaning): the evaluation model's logits.
- judge2: a second evaluation model of another architecture and seed (its logits), when one is given.
- both: a success only when eval_model and judge2 both put the attacked class first (top 5), the guard
  against images that fool one classifier (arXiv 2505.03519 found single judges counting adversarial
  images as successes).
- nn: the identity of the attack image's nearest private *training* image in the evaluation model's
  penultimate feature space, with the squared L2 distance delta_eval uses (distance.py); top-5 ranks the
  classes by the distance to their nearest training image. It needs no decision boundary, so an image
  that only crosses the evaluation model's boundary without coming near real images of the class does
  not count.

Uncertainty (issue 30): the attack images of one class are often near-identical, so a class succeeds or
fails as a whole and the effective sample size is the number of classes, not of images. The interval of
Acc@1 resamples the attacked classes with replacement (seeded; each resample's Acc@1 is its pooled hits
over its pooled images, so with equal images per class it is the mean of the class accuracies) and takes
the 2.5 / 97.5 % percentiles (linear interpolation). Choice: percentile, not BCa, since with a handful of
all-or-nothing classes the bootstrap distribution is a scaled binomial whose percentiles are what a user
reads; it says nothing about attack-seed noise (`lsmia audit --repeats`).
"""
from __future__ import annotations

import torch

from .accuracy import topk_hits
from .features import check_labels

CI_LEVEL = 0.95
NN_JUDGE = ("nearest private training image in the evaluation model's penultimate feature space (squared L2, "
            "as delta_eval); top-5: the classes ranked by their nearest training image")


def nearest_class_scores(attack_feats: torch.Tensor, ref_feats: torch.Tensor, ref_labels: torch.Tensor,
                         num_classes: int) -> torch.Tensor:
    """(n, num_classes) float64 scores of the nearest-neighbour judge: minus the squared L2 distance from
    each attack feature to the nearest reference feature of each class (-inf for a class without one), so
    argmax is the class of the nearest reference image and topk ranks classes by their nearest image."""
    if attack_feats.dim() != 2 or ref_feats.dim() != 2 or attack_feats.shape[1] != ref_feats.shape[1]:
        raise ValueError(f"features must be (N, F) of one width, got attack {tuple(attack_feats.shape)} and "
                         f"reference {tuple(ref_feats.shape)}")
    ref_labels = check_labels(ref_labels, ref_feats.shape[0], num_classes, "reference labels")
    scores = torch.full((attack_feats.shape[0], num_classes), float("-inf"), dtype=torch.float64)
    queries = attack_feats.double()
    for c in ref_labels.unique().tolist():  # float64 class by class, as delta_eval (large squared norms)
        scores[:, c] = -torch.cdist(queries, ref_feats[ref_labels == c].double()).min(dim=1).values.square()
    return scores


def per_class_accuracy(hits: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """{attacked class: fraction of its images that are hits}."""
    return {c: hits[labels == c].float().mean().item() for c in sorted(labels.unique().tolist())}


def class_bootstrap_ci(hits: torch.Tensor, labels: torch.Tensor, resamples: int = 2000, seed: int = 0,
                       level: float = CI_LEVEL) -> tuple[float, float] | tuple[None, None]:
    """Percentile interval of Acc@1 (pooled hits / pooled images) over `resamples` resamples of the attacked
    classes with replacement; (None, None) when resamples is 0."""
    if hits.shape != labels.shape or hits.dim() != 1 or hits.numel() == 0:
        raise ValueError(f"hits and labels must be non-empty (n,) tensors of one shape, got "
                         f"{tuple(hits.shape)} and {tuple(labels.shape)}")
    if resamples == 0:
        return None, None
    classes, inverse = labels.unique(return_inverse=True)
    n = torch.bincount(inverse, minlength=classes.numel()).double()
    h = torch.bincount(inverse, weights=hits.double(), minlength=classes.numel())
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(classes.numel(), (resamples, classes.numel()), generator=g)
    acc = h[idx].sum(dim=1) / n[idx].sum(dim=1)
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(acc, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return lo, hi


def judge_scores(judges: dict[str, torch.Tensor], labels: torch.Tensor, resamples: int, seed: int) -> dict:
    """Every judge's Acc@1 / Acc@5 (None with 5 classes or fewer), its class-bootstrap interval and per-class
    Acc@1, from `judges` = {name: (n, K) scores}; with both "eval_model" and "judge2" also the judge "both".
    Keys: acc1{sfx}, acc5{sfx}, acc1{sfx}_ci_low, acc1{sfx}_ci_high with sfx "" for eval_model and _NAME for
    the others, and acc1_per_class = {judge: {class: Acc@1}}."""
    hits = {name: {k: topk_hits(s, labels, k) for k in (1, 5)} for name, s in judges.items()}
    if "eval_model" in hits and "judge2" in hits:
        hits["both"] = {k: hits["eval_model"][k] & hits["judge2"][k] for k in (1, 5)}
    num_classes = next(iter(judges.values())).shape[1]
    out: dict = {"acc1_per_class": {}}
    for name, h in hits.items():
        sfx = "" if name == "eval_model" else f"_{name}"
        if sfx:  # the primary judge's acc1 / acc5 come from attack_accuracy, as before
            out[f"acc1{sfx}"] = h[1].float().mean().item()
            out[f"acc5{sfx}"] = h[5].float().mean().item() if num_classes > 5 else None
        out[f"acc1{sfx}_ci_low"], out[f"acc1{sfx}_ci_high"] = class_bootstrap_ci(h[1], labels, resamples, seed)
        out["acc1_per_class"][name] = per_class_accuracy(h[1], labels)
    return out
