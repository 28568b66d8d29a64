"""Per-class leakage of one attack and the distance yardstick of real held-out images."""
from __future__ import annotations

from pathlib import Path

import torch

from ..metrics import extract_features, load_attack_results, nearest_class_distances, predict_logits
from ..runio import load_checkpoint


def class_leakage(attack_dir: Path, eval_model, reference, class_names: list[str]) -> list[dict]:
    """Per attacked class: the evaluation model's Acc@1 on its attack images, their mean delta_eval and the
    target's mean confidence; sorted from most to least leaking (Acc@1 high, then distance low)."""
    _, images, labels = load_attack_results(attack_dir)
    hits = predict_logits(eval_model, images).argmax(1) == labels
    dist = nearest_class_distances(extract_features(eval_model, images), labels, reference.train_feats,
                                   reference.train_labels)
    conf = load_checkpoint(Path(attack_dir) / "results.pt")["confidences"]
    rows = []
    for c in sorted(labels.unique().tolist()):
        m = labels == c
        rows.append({"class": c, "name": class_names[c], "n": int(m.sum()), "acc1": hits[m].float().mean().item(),
                     "delta_eval": dist[m].mean().item(), "target_confidence": conf[m].mean().item()})
    return sorted(rows, key=lambda r: (-r["acc1"], r["delta_eval"]))


@torch.no_grad()
def real_delta(eval_model, reference) -> float:
    """delta_eval of the private *test* images (nearest private train image of their own class): how close
    a genuine unseen image of the identity lands, the yardstick for the attack images' delta_eval."""
    feats = extract_features(eval_model, reference.test_images)
    return nearest_class_distances(feats, reference.test_labels, reference.train_feats,
                                   reference.train_labels).mean().item()
