"""Metrics on constructed inputs with known answers, and `lsmia evaluate` end to end on real digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from conftest import lsmia
from lsmia_ext.metrics import (KesConfig, attack_accuracy, extract_features, feature_distance, fit_to_model,
                               frechet_distance, kernel_inception_distance, knowledge_extraction, prdc, prdc_per_class, target_utility)
from lsmia_ext.metrics.evaluate import FINAL_SELECTED_BEFORE, INITIAL_SELECTION, load_initial_images
from lsmia_ext.models import Classifier

torch.set_num_threads(1)


def column_model(num_classes: int, size: int = 8) -> Classifier:
    """A real Classifier whose logit k is (up to an affine map) the mean of image column k, so the
    predicted ranking of any constructed image is known."""
    head_w = torch.zeros(num_classes, size * size)
    for k in range(num_classes):
        head_w[k, k::size] = 1.0 / size  # every pixel of column k (row-major flatten)
    model = Classifier(nn.Flatten(), size * size, num_classes, in_channels=1, image_size=size)
    with torch.no_grad():
        model.head.weight.copy_(head_w)
        model.head.bias.zero_()
    return model.eval()


def column_images(values: torch.Tensor, size: int = 8) -> torch.Tensor:
    """values (B, size): image b has constant column k = values[b, k]."""
    return values[:, None, None, :].expand(-1, 1, size, -1).contiguous()


# ---------------------------------------------------------------- attack accuracy
def test_attack_accuracy_top1_and_top5_known():
    model = column_model(7)
    vals = torch.zeros(4, 8)
    ranking = [[0, 1, 2, 3, 4, 5], [3, 0, 1, 2, 4, 5], [6, 5, 4, 3, 2, 1], [2, 6, 5, 4, 3, 1]]
    for b, order in enumerate(ranking):  # column order[0] brightest, then order[1], ...
        for rank, k in enumerate(order):
            vals[b, k] = 1.0 - 0.1 * rank
    labels = torch.tensor([0, 0, 1, 1])  # top1 hit, rank 2 (top5 hit), rank 6 (miss), not in top 5
    out = attack_accuracy(model, column_images(vals), labels)
    assert out == {"acc1": pytest.approx(0.25), "acc5": pytest.approx(0.5)}


def test_attack_accuracy_acc5_is_none_with_five_classes_or_fewer():
    model = column_model(5)
    vals = torch.eye(8)[:2] * 0.9
    out = attack_accuracy(model, column_images(vals), torch.tensor([0, 2]))
    assert out["acc1"] == pytest.approx(0.5) and out["acc5"] is None


def test_attack_accuracy_resizes_other_resolutions():
    model = column_model(7)
    vals = torch.zeros(3, 8)
    vals[0, 3] = vals[1, 6] = vals[2, 1] = 1.0
    big = F.interpolate(column_images(vals), size=(16, 16), mode="nearest")  # 16 px: each column doubled
    assert fit_to_model(model, big).shape == (3, 1, 8, 8)
    assert attack_accuracy(model, big, torch.tensor([3, 6, 0]))["acc1"] == pytest.approx(2 / 3)


def test_attack_accuracy_rejects_bad_labels_and_shapes():
    model = column_model(7)
    imgs = column_images(torch.rand(2, 8))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        attack_accuracy(model, imgs, torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="2 images"):
        attack_accuracy(model, imgs, torch.tensor([0]))
    with pytest.raises(ValueError, match="B, C, H, W"):
        attack_accuracy(model, imgs[0], torch.tensor([0]))
    with pytest.raises(ValueError, match="topk"):
        attack_accuracy(model, imgs, torch.tensor([0, 1]), topk=(0,))


# ---------------------------------------------------------------- delta_eval
def test_feature_distance_known_squared_distances():
    # Classifier features are (2x - 1) flattened: a pixel difference d costs (2d)^2
    model = Classifier(nn.Flatten(), 4, 2, in_channels=1, image_size=2).eval()
    private = torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1], [0.5, 0.5, 0.5, 0.5]]).view(3, 1, 2, 2)
    private_labels = torch.tensor([0, 0, 1])
    attack = torch.tensor([[0.25, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]]).view(2, 1, 2, 2)
    # image 0 (class 0): nearest is all-zeros, pixel diff 0.25 -> 0.25; image 1 (class 1): itself -> 0
    d = feature_distance(model, attack, torch.tensor([0, 1]), private, private_labels)
    assert d == pytest.approx((0.25 + 0.0) / 2)
    # attacked as class 0 instead, image 1 is 0.5 away from both class-0 images in every pixel: 4 * 1.0
    d = feature_distance(model, attack, torch.tensor([0, 0]), private, private_labels)
    assert d == pytest.approx((0.25 + 4.0) / 2)


def test_feature_distance_class_without_private_images_is_an_error():
    model = Classifier(nn.Flatten(), 4, 3, in_channels=1, image_size=2).eval()
    x = torch.rand(2, 1, 2, 2)
    with pytest.raises(ValueError, match="attacked class 2"):
        feature_distance(model, x, torch.tensor([2, 2]), x, torch.tensor([0, 1]))


def test_extract_features_restores_training_mode_and_batches():
    model = Classifier(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4)), 4, 2, 1, 2)
    model.train()
    x = torch.rand(10, 1, 2, 2)
    with torch.no_grad():
        model.eval()
        ref = model.features(x)
        model.train()
    out = extract_features(model, x, batch_size=3)
    assert model.training and torch.allclose(out, ref)


# ---------------------------------------------------------------- FID
def test_frechet_identical_sets_is_zero():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_shifted_means_equal_covariances():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(x, x + shift) == pytest.approx(shift.square().sum().item(), rel=1e-6)


def test_frechet_scaled_set_closed_form():
    # b = 2a + s: cov_b = 4 cov_a, tr sqrt(cov_a cov_b) = 2 tr(cov_a), so FD = ||mu_a - mu_b||^2 + tr(cov_a)
    a = torch.randn(400, 4, generator=torch.Generator().manual_seed(2)).double() @ torch.tensor(
        [[1.0, 0.3, 0, 0], [0, 1, 0.2, 0], [0, 0, 2, 0.1], [0, 0, 0, 0.5]], dtype=torch.float64)
    b = 2 * a + 1.5
    expect = (a.mean(0) - b.mean(0)).square().sum() + torch.cov(a.T).trace()
    assert frechet_distance(a, b) == pytest.approx(expect.item(), rel=1e-9)


def test_frechet_matches_scipy_sqrtm_on_full_rank_data():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g) * 1.3 + 0.2
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    expect = (np.square(a.numpy().mean(0) - b.numpy().mean(0)).sum() + np.trace(ca) + np.trace(cb)
              - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb).real))
    assert frechet_distance(a, b) == pytest.approx(expect, rel=1e-6)


def test_frechet_fewer_samples_than_dimensions_stays_finite():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(6, 64, generator=g), torch.randn(9, 64, generator=g)
    d = frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-5)


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="widths differ"):
        frechet_distance(torch.randn(4, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.tensor([[0.0], [float("nan")]]), torch.randn(5, 1))


# ---------------------------------------------------------------- KID
def _mmd2_numpy(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, by explicit loops (the definition)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_definition_on_a_tiny_case():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) + 0.7
    # subsets of size min(1000, 4, 4) = 4 are both whole sets: every subset gives the same MMD^2
    out = kernel_inception_distance(y, x, subsets=3, bootstrap=0)
    assert out["kid"] == pytest.approx(_mmd2_numpy(x, y), rel=1e-9) and out["kid_subset_size"] == 4
    assert out["kid_ci_low"] is None and out["kid_ci_high"] is None
    # with subsets of the larger real set: the mean over subsets, each by the definition
    real = torch.randn(7, 3, generator=g)
    sub = kernel_inception_distance(real, x, subsets=50, bootstrap=0, seed=3)["kid"]
    gen = torch.Generator().manual_seed(3)
    real_sets = [torch.randperm(7, generator=gen)[:4] for _ in range(50)]
    fake_sets = [torch.randperm(4, generator=gen)[:4] for _ in range(50)]
    expect = np.mean([_mmd2_numpy(x[f], real[r]) for f, r in zip(fake_sets, real_sets)])
    assert sub == pytest.approx(expect, rel=1e-9)


def test_kid_bootstrap_replicate_leaves_out_pairs_of_one_image():
    """One replicate by brute force: draws with replacement, within-fake pairs of distinct source images."""
    from lsmia_ext.metrics.kid import _replicate, polynomial_kernel

    g = torch.Generator().manual_seed(5)
    fake, real = torch.randn(6, 3, generator=g).double(), torch.randn(9, 3, generator=g).double()
    real_sets = [torch.randperm(9, generator=g)[:6] for _ in range(4)]
    k_ff = polynomial_kernel(fake, fake)
    cross = torch.stack([polynomial_kernel(fake, real[r]).mean(1) for r in real_sets], dim=1)
    within_real = torch.tensor([_within_np(real[r]) for r in real_sets], dtype=torch.float64)
    rep = _replicate(k_ff, cross, within_real, 6, 6, torch.Generator().manual_seed(11)).item()
    draws = torch.randint(6, (1, 6), generator=torch.Generator().manual_seed(11))[0].tolist()
    f = fake.numpy()
    kf = lambda a, b: (f[a] @ f[b] / 3 + 1.0) ** 3  # noqa: E731
    pairs = [(i, j) for i in draws for j in draws if i != j]  # ordered pairs of draws of two different images
    within_fake = np.mean([kf(i, j) for i, j in pairs])
    per_subset = [within_fake + within_real[s].item()
                  - 2 * np.mean([(f[i] @ real[r].numpy().T / 3 + 1.0) ** 3 for i in draws])
                  for s, r in enumerate(real_sets)]
    assert rep == pytest.approx(np.mean(per_subset), rel=1e-9)


def _within_np(y):
    y = y.numpy()
    n, d = len(y), y.shape[1]
    return sum((y[i] @ y[j] / d + 1.0) ** 3 for i in range(n) for j in range(n) if i != j) / (n * (n - 1))


def test_kid_near_zero_for_one_distribution_and_positive_for_shifted_gaussians():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(1000, 16, generator=g)
    same = kernel_inception_distance(real, torch.randn(200, 16, generator=g), subsets=20, bootstrap=100)
    shifted = kernel_inception_distance(real, torch.randn(200, 16, generator=g) + 0.5, subsets=20, bootstrap=100)
    for out in (same, shifted):  # the percentile interval around its own point estimate
        assert out["kid_ci_low"] <= out["kid"] <= out["kid_ci_high"]
    assert same["kid_ci_low"] < 0 < same["kid_ci_high"]  # one distribution: 0 inside the interval
    assert shifted["kid_ci_low"] > same["kid_ci_high"]  # a shift of 0.5 per dimension: clearly above
    # population value for a mean shift delta (x.y/d terms): E k(x,x') + E k(y,y') - 2 E k(x,y) > 0, and the
    # shifted estimate is far larger than the same-distribution one
    assert shifted["kid"] > 10 * abs(same["kid"])
    again = kernel_inception_distance(real, torch.randn(200, 16, generator=torch.Generator().manual_seed(9)))
    assert again == kernel_inception_distance(real, torch.randn(200, 16, generator=torch.Generator().manual_seed(9)))


def test_kid_rejects_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        kernel_inception_distance(torch.randn(5, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="widths differ"):
        kernel_inception_distance(torch.randn(5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        kernel_inception_distance(torch.randn(5, 1), torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(ValueError, match="subset_size >= 2"):
        kernel_inception_distance(torch.randn(5, 3), torch.randn(5, 3), subset_size=1)


# ---------------------------------------------------------------- PRDC
def test_prdc_hand_computed_1d():
    real = torch.arange(10.0)[:, None]          # k=1 radius of every real point: 1
    fake = torch.tensor([0.5, 4.2, 50.0, 51.0])[:, None]  # fake radii: 3.7, 3.7, 1, 1
    out = prdc(real, fake, k=1)
    # precision: 0.5 and 4.2 lie in real balls, 50 and 51 do not
    # density: 0.5 in the balls of 0 and 1, 4.2 in those of 4 and 5 -> 4 / (1 * 4)
    # coverage: reals 0, 1, 4, 5 have a fake within 1 -> 4 / 10
    # recall: fake balls [-3.2, 4.2] and [0.5, 7.9] hold reals 0..7 -> 8 / 10
    assert out == pytest.approx({"precision": 0.5, "recall": 0.8, "density": 1.0, "coverage": 0.4})


def test_prdc_identical_and_far_sets():
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(5))
    same = prdc(x, x.clone(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(x, x + 100.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_chunking_gives_the_same_answer(monkeypatch):
    import lsmia_ext.metrics.precision_recall as prdc_mod

    g = torch.Generator().manual_seed(6)
    real, fake = torch.randn(70, 4, generator=g), torch.randn(50, 4, generator=g) * 1.2
    whole = prdc(real, fake, k=3)
    monkeypatch.setattr(prdc_mod, "CHUNK", 16)
    assert prdc(real, fake, k=3) == pytest.approx(whole)


def test_prdc_rejects_bad_k_and_tiny_sets():
    with pytest.raises(ValueError, match="k must be"):
        prdc(torch.randn(10, 2), torch.randn(10, 2), k=0)
    with pytest.raises(ValueError, match="more than k=3"):
        prdc(torch.randn(10, 2), torch.randn(3, 2), k=3)


def test_prdc_per_class_differs_from_pooled_as_expected():
    """Two well separated classes; every attack image of class 0 lies in class 1's cluster. Pooled,
    every fake is near *some* private image (precision 1); per class, class 0's fakes are near none of
    class 0's images (precision 0), class 1's are all fine (1): the paper's per-class mean is 0.5."""
    g = torch.Generator().manual_seed(0)
    real = torch.cat([torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g) + 20.0])
    real_y = torch.tensor([0] * 40 + [1] * 40)
    fake = torch.randn(20, 2, generator=g) * 0.5 + 20.0
    fake_y = torch.tensor([0] * 10 + [1] * 10)
    assert prdc(real, fake, k=3)["precision"] == 1.0
    out = prdc_per_class(real, real_y, fake, fake_y, k=3)
    assert out["per_class"][0]["precision"] == 0.0 and out["per_class"][0]["coverage"] == 0.0
    assert out["per_class"][1]["precision"] == 1.0
    assert out["precision"] == pytest.approx(0.5)
    for key in ("recall", "density", "coverage"):
        assert out[key] == pytest.approx((out["per_class"][0][key] + out["per_class"][1][key]) / 2)
    assert out["skipped_classes"] == []


def test_prdc_per_class_skips_classes_too_small_for_knn():
    g = torch.Generator().manual_seed(1)
    real, real_y = torch.randn(30, 2, generator=g), torch.tensor([0] * 20 + [1] * 10)
    fake, fake_y = torch.randn(9, 2, generator=g), torch.tensor([0] * 6 + [1] * 3)  # class 1: 3 fakes
    out = prdc_per_class(real, real_y, fake, fake_y, k=3)
    assert out["skipped_classes"] == [1] and list(out["per_class"]) == [0]
    assert out["precision"] == out["per_class"][0]["precision"]
    none = prdc_per_class(real, real_y, fake[6:], fake_y[6:], k=3)
    assert none["skipped_classes"] == [1] and none["precision"] is None and none["per_class"] == {}
    with pytest.raises(ValueError, match="one entry per feature row"):
        prdc_per_class(real, real_y[:5], fake, fake_y)


# ---------------------------------------------------------------- target utility
def test_target_utility_known_accuracy_and_nll():
    model = column_model(3)
    vals = torch.zeros(4, 8)
    vals[0, 0] = vals[1, 1] = vals[2, 2] = vals[3, 0] = 1.0
    labels = torch.tensor([0, 1, 2, 1])  # last one wrong
    out = target_utility(model, column_images(vals), labels)
    # logits of each image: 1 at its bright column, 0 elsewhere (the affine map is the identity here)
    logits = (2 * vals[:, :3] - 1)  # Classifier normalises x -> 2x - 1 before the column means
    assert out["test_acc"] == pytest.approx(0.75)
    assert out["test_nll"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert 0.0 <= out["ece"] <= 1.0


# ---------------------------------------------------------------- KES and lsmia evaluate on real data
@pytest.fixture(scope="module")
def digits():
    from lsmia_ext.data import DataConfig, load_scenario

    cfg = DataConfig(name="digits", private_classes=[0, 1, 2, 3, 4, 5], public_classes=[6, 7, 8, 9],
                     test_fraction=0.2, seed=0)
    return cfg, load_scenario(cfg)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0]).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _kes_split(raw, per_class: int, test_per_class: int, seed: int = 0):
    """From a whole dataset: `per_class` training images and `test_per_class` held-out images per class
    (seeded, disjoint), as [0, 1] floats."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(raw.num_classes):
        idx = (raw.labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        train.append(idx[:per_class])
        test.append(idx[per_class:per_class + test_per_class])
    tr, te = torch.cat(train), torch.cat(test)
    x = raw.images.float() / 255.0
    return (x[tr], raw.labels[tr]), (x[te], raw.labels[te])


def _kes_both_ways(raw, per_class: int, test_per_class: int, cfg: KesConfig, allows_hflip: bool):
    """KES of a student trained on real images with their labels and with shuffled labels, scored on
    held-out real images; returns (real, shuffled, chance, tolerance)."""
    (x, y), test = _kes_split(raw, per_class, test_per_class)
    k = raw.num_classes
    real = knowledge_extraction(x, y, test, test, k, cfg, seed=0, allows_hflip=allows_hflip)["kes_test"]
    shuffled_y = y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(1))]
    shuffled = knowledge_extraction(x, shuffled_y, test, test, k, cfg, seed=0, allows_hflip=allows_hflip)["kes_test"]
    chance = 1.0 / k
    # With labels independent of the images, a balanced test set gives accuracy 1/K in expectation.
    # Its spread comes from the random labels of the training images each prediction leans on, so
    # there are at most n_train independent draws: 4 binomial standard errors at n = n_train.
    tolerance = 4 * (chance * (1 - chance) / y.numel()) ** 0.5
    return real, shuffled, chance, tolerance


def test_kes_student_learns_real_digits_and_not_shuffled_labels():
    """The student can learn from as few real images as an attack gives it (20 per class, 8x8 digits),
    and cannot learn from labels that carry no information."""
    from lsmia_ext.data.sources import load_digits

    cfg = KesConfig(steps=150, batch_size=32)
    real, shuffled, chance, tol = _kes_both_ways(load_digits(), 20, 60, cfg, allows_hflip=False)
    assert real > 0.75, real                       # chance is 0.10
    assert abs(shuffled - chance) < tol, (shuffled, chance, tol)


def _fashion_mnist():
    from lsmia_ext.data.sources import DatasetNotFoundError, load_fashion_mnist

    try:
        return load_fashion_mnist()
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed (`make install` adds dataset-fashion-mnist): {err}")


def test_kes_student_fashion_mnist_fast():
    """28 px Fashion-MNIST, 20 real images per class, a reduced budget: far above chance (0.10)."""
    real, shuffled, chance, tol = _kes_both_ways(_fashion_mnist(), 20, 40, KesConfig(steps=100, batch_size=32),
                                                 allows_hflip=True)
    assert real > 0.5, real
    assert abs(shuffled - chance) < tol, (shuffled, chance, tol)


@pytest.mark.slow
def test_kes_student_fashion_mnist_default_budget():
    """The shipped KesConfig on 28 px Fashion-MNIST, 25 real images per class (the study's size)."""
    real, shuffled, chance, tol = _kes_both_ways(_fashion_mnist(), 25, 200, KesConfig(), allows_hflip=True)
    assert real > 0.6, real
    assert abs(shuffled - chance) < tol, (shuffled, chance, tol)


def test_kes_is_seeded_and_refuses_bad_input(digits):
    _, sc = digits
    tr, te = sc.tensors("private_train"), sc.tensors("private_test")
    few = torch.cat([(tr[1] == c).nonzero()[:3, 0] for c in range(sc.num_classes)])
    cfg = KesConfig(steps=5, batch_size=8)
    once = [knowledge_extraction(tr[0][few], tr[1][few], tr, te, sc.num_classes, cfg, seed=3) for _ in range(2)]
    assert once[0] == once[1]  # seeded: same student, same score
    with pytest.raises(ValueError, match="at least 2 attack images"):
        knowledge_extraction(tr[0][:1], tr[1][:1], tr, te, sc.num_classes, cfg)
    with pytest.raises(ValueError, match="attack labels must lie in"):
        knowledge_extraction(tr[0][:4], torch.full((4,), 99), tr, te, sc.num_classes, cfg)
    with pytest.raises(ValueError, match="crop_scale"):
        KesConfig(crop_scale=(0.5, 1.5))


def test_lsmia_evaluate_end_to_end(digits, tmp_path):
    """A 'perfect attack' (private training images) must score delta_eval 0 and near-perfect accuracy."""
    from lsmia_ext.models import build_model, classifier_state
    from lsmia_ext.runio import save_checkpoint, write_json

    cfg, sc = digits
    x, y = sc.tensors("private_train")
    for name, arch, seed in (("target", "small_cnn", 0), ("eval", "small_resnet", 1)):
        torch.manual_seed(seed)
        model = _fit(build_model(arch, sc.num_classes, sc.channels, sc.image_size), x, y, epochs=3, seed=seed)
        save_checkpoint(tmp_path / name / "model.pt", classifier_state(model, arch))
    picks = torch.cat([(y == c).nonzero()[:8, 0] for c in range(sc.num_classes)])
    attack_dir = tmp_path / "attack"
    save_checkpoint(attack_dir / "results.pt", {"images": x[picks], "labels": y[picks],
                                                "latents": torch.empty(0), "confidences": torch.ones(len(picks)),
                                                "initial_confidences": torch.empty(0),
                                                "initial_images": x[picks].flip(0)})
    write_json(attack_dir / "attack.json", {"attack": "ppa", "settings": {"data": cfg.model_dump(mode="json")},
                                            "seed": 0, "classes": list(range(sc.num_classes)),
                                            "target": str(tmp_path / "target"), "prior": None, "timings": {}})
    rc, _, stderr = lsmia("evaluate", "--attack", attack_dir, "--eval-model", tmp_path / "eval",
                          "--second-eval-model", tmp_path / "target", "--set", "kes.steps=30", "--set", "max_reference=300")
    assert rc == 0, stderr
    res = json.loads((attack_dir / "evaluation.json").read_text())
    # the judges: the evaluation model stays primary; every attack image is a private training image, so its
    # nearest training image (distance 0) is itself and the nearest-neighbour judge is always right
    assert res["judges"]["primary"] == "eval_model" and res["judges"]["judge2"] == str(tmp_path / "target")
    assert res["acc1_nn"] == 1.0 and res["acc1_nn_ci_low"] == res["acc1_nn_ci_high"] == 1.0
    assert res["acc1_both"] <= min(res["acc1"], res["acc1_judge2"]) and res["acc1_judge2"] > 0.7
    assert res["acc1_both"] >= res["acc1"] + res["acc1_judge2"] - 1 - 1e-9  # at most the misses of each apart
    per_class = res["acc1_per_class"]["eval_model"]
    assert sum(per_class.values()) / len(per_class) == pytest.approx(res["acc1"])  # 8 images in every class
    assert res["acc1_ci_low"] <= res["acc1"] <= res["acc1_ci_high"] and 0.7 < res["eval_model_test_acc_judge2"]
    # the judges alone (for an evaluation written before they existed) give the same keys
    from lsmia_ext.metrics import EvaluateConfig, build_reference, score_judges
    from lsmia_ext.models import load_classifier

    eval_net = load_classifier(tmp_path / "eval")
    alone = score_judges(x[picks], y[picks], eval_net, build_reference(eval_net, sc), EvaluateConfig(),
                         load_classifier(tmp_path / "target"))
    assert json.loads(json.dumps(alone)) == {k: res[k] for k in alone}
    for key in ("acc1", "acc5", "delta_eval", "fid", "precision", "recall", "density", "coverage",
                "kes_train", "kes_test", "test_acc", "test_nll", "ece", "eval_model_test_acc"):
        assert key in res, key
    assert res["acc5"] is None or res["acc5"] >= res["acc1"]
    assert res["delta_eval"] == pytest.approx(0.0, abs=1e-6)  # every attack image is a private image
    assert res["acc1"] >= res["eval_model_test_acc"] - 0.1 and res["acc1"] > 0.7
    assert res["precision"] > 0.9
    # per class, then averaged: every attacked class is scored, none skipped
    assert sorted(res["prdc_per_class"]) == [str(c) for c in range(sc.num_classes)] and res["prdc_skipped_classes"] == []
    # before optimisation: the same labels on images of other classes (reversed order), so far lower
    assert res["acc1_initial"] is not None and res["acc1_initial"] < res["acc1"] - 0.3
    # a results.pt of attack results version 1 (initial_images only): scored as before, and labelled so
    assert res["initial_scored_on"] == FINAL_SELECTED_BEFORE and res["n_initial"] == len(picks)
    # KID beside FID, and the note that FID is biased on this few images
    assert res["kid_ci_low"] <= res["kid"] <= res["kid_ci_high"] and "compare KID" in res["fid_note"]
    assert res["test_acc_sampling"] is None  # no MID bottleneck in this target
    assert res["test_acc"] > 0.7 and np.isfinite(res["fid"]) and res["fid"] >= 0
    assert "manifest.json" in {p.name for p in attack_dir.iterdir()}


def test_initial_selection_images_are_read_whole_and_checked(tmp_path):
    """Version 2 results: every initial-selection candidate (any count) with its own labels."""
    from lsmia_ext.runio import save_checkpoint

    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 0, 1, 1])
    init, init_labels = torch.rand(10, 1, 8, 8), torch.tensor([0] * 5 + [1] * 5)
    save_checkpoint(tmp_path / "results.pt", {"images": images, "labels": labels, "initial_selection_images": init,
                                              "initial_selection_labels": init_labels, "initial_images": images})
    got = load_initial_images(tmp_path, images, labels)
    assert torch.equal(got[0], init) and torch.equal(got[1], init_labels) and got[2] == INITIAL_SELECTION
    save_checkpoint(tmp_path / "results.pt", {"images": images, "labels": labels, "initial_selection_images": init,
                                              "initial_selection_labels": init_labels[:9]})
    with pytest.raises(ValueError, match="initial_selection_labels has 9 entries but there are 10 images"):
        load_initial_images(tmp_path, images, labels)
    save_checkpoint(tmp_path / "results.pt", {"images": images, "labels": labels,
                                              "initial_selection_images": torch.empty(0)})
    assert load_initial_images(tmp_path, images, labels) is None  # GMI / MI-Face: no initial selection


def test_sampled_utility_scores_a_mid_target_with_noise_and_hands_it_back(digits):
    from lsmia_ext.defenses import MID
    from lsmia_ext.metrics import EvaluateConfig, PrivateReference
    from lsmia_ext.metrics.evaluate import sampled_utility
    from lsmia_ext.models import build_model

    _, sc = digits
    x, y = sc.tensors("private_test")
    ref = PrivateReference(x, y, x, y, torch.zeros(len(x), 2), sc.num_classes)
    torch.manual_seed(0)
    plain = build_model("small_cnn", sc.num_classes, sc.channels, sc.image_size).eval()
    assert sampled_utility(plain, ref, EvaluateConfig()) == dict.fromkeys(
        ("test_acc_sampling", "test_nll_sampling", "ece_sampling"))
    mid = MID(beta=0.0, bottleneck_dim=16).wrap(build_model("small_cnn", sc.num_classes, sc.channels,
                                                             sc.image_size)).eval()
    with torch.no_grad():
        mid.trunk[-1].encoder.bias[16:] += 8.0  # large noise: the sampled NLL differs from the mean's
    mean_logits = mid(x)
    cfg = EvaluateConfig(seed=4)
    sampled = sampled_utility(mid, ref, cfg)
    assert sampled == sampled_utility(mid, ref, cfg)  # seeded
    assert sampled["test_nll_sampling"] != pytest.approx(target_utility(mid, x, y)["test_nll"], rel=1e-3)
    assert torch.equal(mid(x), mean_logits)  # back to z = mu


def test_lsmia_evaluate_reports_missing_run_dir(tmp_path):
    (tmp_path / "eval").mkdir()
    rc, _, stderr = lsmia("evaluate", "--attack", tmp_path / "nope", "--eval-model", tmp_path / "eval")
    assert rc == 2 and "attack run directory" in stderr


def test_category_accuracy_counts_a_sibling_identity_as_the_right_category():
    """acc_category: top-1 class in the attacked class's category (identity sub-classes of one category)."""
    from lsmia_ext.metrics.accuracy import attack_accuracy
    from lsmia_ext.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=4, in_channels=1, image_size=8).eval()
    images = torch.rand(40, 1, 8, 8)
    with torch.no_grad():
        pred = model(images).argmax(1)
    labels = pred ^ 1  # always the sibling identity (0 <-> 1, 2 <-> 3): wrong class, right category
    out = attack_accuracy(model, images, labels, topk=(1,), class_category=[0, 0, 1, 1])
    assert out["acc1"] == 0.0 and out["acc_category"] == 1.0
    out = attack_accuracy(model, images, labels, topk=(1,), class_category=[0, 1, 2, 3])
    assert out["acc_category"] == 0.0
    with pytest.raises(ValueError, match="class_category"):
        attack_accuracy(model, images, labels, topk=(1,), class_category=[0, 1])
