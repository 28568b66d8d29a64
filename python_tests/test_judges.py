"""The judges of an attack on hand cases: the nearest-neighbour judge on constructed features, two fixed
tiny models for "both judges agree", and the bootstrap-over-classes interval of attack Acc@1."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lsmia_ext.metrics import (EvaluateConfig, class_bootstrap_ci, judge_scores, nearest_class_scores,
                               per_class_accuracy, predict_logits, topk_hits)
from lsmia_ext.models import Classifier

torch.set_num_threads(1)


# ---------------------------------------------------------------- nearest-neighbour judge
REF = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, 0.0], [10.0, 10.0]])
REF_LABELS = torch.tensor([0, 0, 1, 2])
ATTACK = torch.tensor([[1.0, 0.0], [2.0, 1.0], [6.0, 6.0]])


def test_nearest_neighbour_scores_are_minus_the_squared_distance_to_each_class_nearest_image():
    scores = nearest_class_scores(ATTACK, REF, REF_LABELS, num_classes=4)
    # by hand: (1,0) -> class 0 at 1, class 1 at 4, class 2 at 81+100; (2,1) -> 4+1 / 1+1 / 64+81;
    # (6,6) -> min(72, 36+16) / 9+36 / 16+16; class 3 has no private image: -inf
    expected = -torch.tensor([[1.0, 4.0, 181.0], [5.0, 2.0, 145.0], [52.0, 45.0, 32.0]], dtype=torch.float64)
    torch.testing.assert_close(scores[:, :3], expected, rtol=1e-12, atol=0)  # float64 sqrt then square
    assert torch.isinf(scores[:, 3]).all() and (scores[:, 3] < 0).all()
    labels = torch.tensor([0, 0, 2])
    assert topk_hits(scores, labels, 1).tolist() == [True, False, True]  # (2,1) is nearest to class 1's image
    assert topk_hits(scores, labels, 2).tolist() == [True, True, True]   # ... and class 0 is its second
    out = judge_scores({"nn": scores}, labels, resamples=0, seed=0)
    assert out["acc1_nn"] == pytest.approx(2 / 3) and out["acc5_nn"] is None  # 4 classes: top-5 is trivial
    assert out["acc1_per_class"]["nn"] == {0: 0.5, 2: 1.0}
    assert out["acc1_nn_ci_low"] is None and out["acc1_nn_ci_high"] is None


def test_nearest_neighbour_judge_rejects_mismatched_features():
    with pytest.raises(ValueError, match="one width"):
        nearest_class_scores(ATTACK, torch.zeros(4, 3), REF_LABELS, 4)
    with pytest.raises(ValueError, match=r"reference labels must lie in \[0, 2\)"):
        nearest_class_scores(ATTACK, REF, REF_LABELS, 2)


# ---------------------------------------------------------------- two judges
def pixel_model(bias: list[float]) -> Classifier:
    """A fixed 4-class model on 1x2x2 images: logit k = 2 * pixel k - 1 + bias[k] (the Classifier's input
    normalisation (x - 0.5) / 0.5, then the identity head)."""
    model = Classifier(nn.Flatten(), 4, 4, in_channels=1, image_size=2)
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(4))
        model.head.bias.copy_(torch.tensor(bias))
    return model.eval()


def test_both_judges_count_an_image_only_when_both_put_the_attacked_class_first():
    first, second = pixel_model([0.0, 0.0, 0.0, 0.0]), pixel_model([0.0, 1.2, 0.0, 0.0])  # second favours class 1
    pixels = torch.tensor([[1.0, 0.5, 0.0, 0.0],   # label 0: first 0 (hit); second: logit 1.2 for 1 > 1 (miss)
                           [1.0, 0.2, 0.0, 0.0],   # label 0: both hit
                           [0.0, 0.0, 1.0, 0.9],   # label 3: both say 2 (miss)
                           [0.0, 0.0, 0.5, 1.0],   # label 3: both hit
                           [0.0, 0.0, 1.0, 0.0],   # label 2: both hit
                           [0.0, 0.9, 0.0, 1.0]])  # label 1: first 3 (miss); second 1 (hit)
    labels = torch.tensor([0, 0, 3, 3, 2, 1])
    images = pixels.view(6, 1, 2, 2)
    judges = {"eval_model": predict_logits(first, images), "judge2": predict_logits(second, images)}
    assert topk_hits(judges["eval_model"], labels, 1).tolist() == [True, True, False, True, True, False]
    assert topk_hits(judges["judge2"], labels, 1).tolist() == [False, True, False, True, True, True]
    out = judge_scores(judges, labels, resamples=0, seed=0)
    assert "acc1" not in out  # the primary judge's acc1 stays attack_accuracy's
    assert out["acc1_judge2"] == pytest.approx(4 / 6) and out["acc1_both"] == pytest.approx(3 / 6)
    assert out["acc1_per_class"]["both"] == {0: 0.5, 1: 0.0, 2: 1.0, 3: 0.5}
    assert out["acc1_per_class"]["eval_model"] == {0: 1.0, 1: 0.0, 2: 1.0, 3: 0.5}


# ---------------------------------------------------------------- interval over classes
def _classes(per_class_hits: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    hits = torch.tensor([h for row in per_class_hits for h in row], dtype=torch.bool)
    labels = torch.tensor([c for c, row in enumerate(per_class_hits) for _ in row])
    return hits, labels


def test_class_bootstrap_has_zero_width_when_every_class_scores_the_same():
    hits, labels = _classes([[1, 0]] * 5)
    assert class_bootstrap_ci(hits, labels, 500, seed=3) == (0.5, 0.5)
    assert per_class_accuracy(hits, labels) == dict.fromkeys(range(5), 0.5)


def test_class_bootstrap_is_wide_for_all_or_nothing_classes():
    """4 classes at 100 % and 4 at 0 % (10 images each): a resample's Acc@1 is Binomial(8, 1/2) / 8, whose
    2.5 % and 97.5 % quantiles are 1/8 and 7/8 (P(X <= 0) = 0.4 %, P(X <= 1) = 3.5 %)."""
    hits, labels = _classes([[1] * 10] * 4 + [[0] * 10] * 4)
    lo, hi = class_bootstrap_ci(hits, labels, 2000, seed=0)
    assert (lo, hi) == (pytest.approx(1 / 8), pytest.approx(7 / 8))
    assert class_bootstrap_ci(hits, labels, 2000, seed=0) == (lo, hi)  # seeded
    # the same 80 hits spread evenly over the images of every class: no class-level uncertainty at all
    assert class_bootstrap_ci(*_classes([[1] * 5 + [0] * 5] * 8), 2000, seed=0) == (0.5, 0.5)


def test_class_bootstrap_pools_images_so_unequal_classes_weigh_by_their_images():
    """Class 0: 1 image, a hit; class 1: 3 images, misses. Resamples: (0,0) -> 1, (1,1) -> 0, mixed ->
    1/4 (pooled), never the unweighted 1/2; the 40 % interval (30-70 % quantiles) sits on the mixed value."""
    hits, labels = _classes([[1], [0, 0, 0]])
    assert class_bootstrap_ci(hits, labels, 4000, seed=0, level=0.4) == (0.25, 0.25)
    assert class_bootstrap_ci(hits, labels, 4000, seed=0) == (0.0, 1.0)


def test_class_bootstrap_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one shape"):
        class_bootstrap_ci(torch.ones(3, dtype=torch.bool), torch.zeros(2, dtype=torch.long))


def test_evaluate_config_dumps_class_bootstrap_only_away_from_its_default():
    """The evaluation stage hash covers EvaluateConfig's dump: the field added with the judges must not
    move it at its default (pinned hashes), and must move it when changed."""
    assert "class_bootstrap" not in EvaluateConfig().model_dump(mode="json")
    assert EvaluateConfig(class_bootstrap=100).model_dump(mode="json")["class_bootstrap"] == 100
