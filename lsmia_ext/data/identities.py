"""Identity-like classes from real data: each category split into sub-classes by k-means, half private.

Why: the paper's prior (FFHQ) can draw any face while the private identities (FaceScrub, CelebA) are
fine-grained classes it never saw. A split by whole categories gives a prior that cannot draw a single
private class, so an attack measures adversarial transfer, not inversion. Here every category of the
dataset (e.g. the 10 Fashion-MNIST categories) is cut into `per_category` sub-classes ("identities")
by k-means on a fixed embedding; in every category `private_per_category` of them are private (the
target's classes) and the rest are public (the only images the prior sees). The prior then covers
every category and never sees a private identity.

The split rule, fixed before any attack result was seen:
  1. embedding: PCA of the raw pixels (scaled to [0, 1]) of the whole dataset, `pca_dim` components;
  2. per category: k-means (k-means++ seeding from `kmeans_seed`, Lloyd iterations to convergence) on
     the category's embedded images; sub-classes ordered by the first PCA coordinate of their centre
     (so the numbering does not depend on the k-means initialisation);
  3. per category: a permutation drawn from `split_seed` picks which sub-classes are private.
The assignment is computed once per process (about a second for Fashion-MNIST) and its sha256 is part of
every data manifest and of the experiment's stage hashes, so a machine that clusters differently can
never silently reuse another assignment's runs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
import torch

from .sources import RawData


@dataclass(frozen=True)
class IdentityAssignment:
    """Sub-class label of every image of a RawData, and which sub-classes are private / public."""

    labels: torch.Tensor          # (N,) int64 sub-class id = position in `names`
    names: tuple[str, ...]        # "T-shirt/top #0", ...
    category: tuple[int, ...]     # category of each sub-class
    category_names: tuple[str, ...]  # the dataset's own class names, indexed by category
    private: tuple[int, ...]      # sub-class ids, category by category
    public: tuple[int, ...]
    sha256: str


def pca_embedding(images: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, dim) float64 scores on the top `dim` principal axes (deterministic sign:
    each axis points so that its largest-magnitude loading is positive)."""
    x = images.reshape(images.shape[0], -1).double() / 255.0
    x = x - x.mean(dim=0)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    vals, vecs = torch.linalg.eigh(cov)
    axes = vecs[:, vals.argsort(descending=True)[:dim]]
    signs = torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    return x @ (axes * signs)


def kmeans(points: torch.Tensor, k: int, seed: int, iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; returns (assignment (N,), centres (k, D))."""
    n = points.shape[0]
    if n < k:
        raise ValueError(f"cannot split {n} images into {k} sub-classes")
    gen = torch.Generator().manual_seed(seed)
    centres = points[torch.randint(n, (1,), generator=gen)]
    for _ in range(1, k):
        d2 = torch.cdist(points, centres).square().min(dim=1).values
        centres = torch.cat([centres, points[torch.multinomial(d2 / d2.sum(), 1, generator=gen)]])
    assign = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(points, centres).argmin(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = points[assign == j]
            if members.shape[0]:  # an emptied cluster keeps its centre
                centres[j] = members.mean(dim=0)
    return assign, centres


def _sha256(labels: torch.Tensor, private: tuple[int, ...]) -> str:
    h = hashlib.sha256(labels.numpy().tobytes())
    h.update(repr(private).encode())
    return h.hexdigest()


_CACHE: dict[tuple, IdentityAssignment] = {}


def assign_identities(raw: RawData, categories: tuple[int, ...], per_category: int, private_per_category: int,
                      pca_dim: int, kmeans_seed: int, split_seed: int) -> IdentityAssignment:
    """See the module docstring. Images of categories not listed get label -1 (used by neither side).
    Cached per process by (data source, arguments)."""
    key = (raw.key, categories, per_category, private_per_category, pca_dim, kmeans_seed, split_seed)
    if key not in _CACHE:
        _CACHE[key] = _assign(raw, *key[1:])
    return _CACHE[key]


def _assign(raw: RawData, categories: tuple[int, ...], per_category: int, private_per_category: int,
            pca_dim: int, kmeans_seed: int, split_seed: int) -> IdentityAssignment:
    if raw.images is None:
        raise ValueError("identity sub-classes need an in-memory dataset (fashion-mnist, mnist5k, digits); "
                         "for an image folder, give one folder per identity instead")
    bad = [c for c in categories if not 0 <= c < raw.num_classes]
    if bad:
        raise ValueError(f"identities.categories {bad} out of range: the dataset has classes 0..{raw.num_classes - 1}")
    emb = pca_embedding(raw.images, pca_dim)
    labels = torch.full_like(raw.labels, -1)
    names, category, private, public = [], [], [], []
    split_gen = torch.Generator().manual_seed(split_seed)
    for c in categories:
        idx = (raw.labels == c).nonzero().flatten()
        assign, centres = kmeans(emb[idx], per_category, kmeans_seed + c)
        order = centres[:, 0].argsort()
        rank = torch.empty_like(order)
        rank[order] = torch.arange(per_category)
        first = len(names)
        labels[idx] = first + rank[assign]
        names += [f"{raw.class_names[c]} #{j}" for j in range(per_category)]
        category += [c] * per_category
        chosen = torch.randperm(per_category, generator=split_gen)[:private_per_category].sort().values
        private += [first + int(j) for j in chosen]
        public += [first + j for j in range(per_category) if first + j not in private]
    return IdentityAssignment(labels, tuple(names), tuple(category), tuple(raw.class_names), tuple(private),
                              tuple(public),
                              _sha256(labels, tuple(private)))


def relabel(raw: RawData, assignment: IdentityAssignment, key_suffix: str) -> RawData:
    """The same images labelled by sub-class; the key stays tied to the source so identities compare."""
    return replace(raw, labels=assignment.labels, class_names=list(assignment.names),
                   key=f"{raw.key}|{key_suffix}")
