"""Scores one attack run directory with every metric of PAPER.md section 5.

Reads RUN_DIR/attack.json and RUN_DIR/results.pt (format: HANDBOOK / attacks), the evaluation model, the
target named in attack.json and the private data named in its settings["data"]; writes
RUN_DIR/evaluation.json. The private-data side (images and their evaluation-model features) depends
only on the evaluation model and the data, so a caller scoring several attacks builds it once with
`build_reference` and passes it in.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field, model_serializer

from ..config import Strict, validate
from ..runio import load_checkpoint, read_json, update_manifest, write_json
from .accuracy import accuracy_from_logits, attack_accuracy, target_utility
from .distance import nearest_class_distances
from .features import check_images, check_labels, extract_features, predict_logits
from .frechet import frechet_distance
from .judges import CI_LEVEL, NN_JUDGE, judge_scores, nearest_class_scores
from .kid import FID_RELIABLE_N, kernel_inception_distance
from .knowledge import KesConfig, knowledge_extraction
from .precision_recall import PRDC_KEYS, prdc_per_class

FEATURE_EXTRACTOR = ("evaluation model penultimate features (eval_model.features); no pretrained "
                     "Inception-v3 weights can be downloaded here, so FID/PRDC are comparable within "
                     "one study only")


class EvaluateConfig(Strict):
    batch_size: int = Field(256, ge=1, description="images per forward pass")
    prdc_k: int = Field(3, ge=1, description="k of the k-NN balls of precision/recall/density/coverage")
    max_reference: int = Field(2000, ge=2, description="private train images of the attacked classes "
                               "used as the real set of FID and to score the KES student (seeded "
                               "subsample); delta_eval and the per-class PRDC use all of them")
    ece_bins: int = Field(15, ge=1)
    kid_subsets: int = Field(100, ge=1, description="KID: random subsets averaged (Binkowski et al. 2018)")
    kid_subset_size: int = Field(1000, ge=2, description="KID: images per subset (capped at the smaller set)")
    kid_bootstrap: int = Field(200, ge=0, description="KID: bootstrap resamples of the attack images for its "
                               "95 % interval (0: no interval)")
    seed: int = 0
    kes: KesConfig = Field(default_factory=KesConfig)
    class_bootstrap: int = Field(2000, ge=0, description="resamples of the attacked classes for every judge's "
                                 "95 % interval of attack Acc@1 (judges.py; 0: no interval)")

    @model_serializer(mode="wrap")
    def _omit_defaults_added_later(self, handler):
        # Fields added after the evaluation stage hash was pinned dump only away from their defaults, so an
        # evaluation of today's default settings keeps its hash (python_tests/test_stage_hashes.py).
        data = handler(self)
        for key in ("class_bootstrap",):
            if getattr(self, key) == type(self).model_fields[key].default:
                data.pop(key, None)
        return data


@dataclass
class PrivateReference:
    """Private train/test tensors and the evaluation model's features of the train images."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_feats: torch.Tensor
    num_classes: int
    allows_hflip: bool = False  # whether the data's classes are mirror-symmetric (KES augmentation)
    class_category: list[int] | None = None  # category of every class when the classes are identity sub-classes


def build_reference(eval_model, scenario, batch_size: int = 256) -> PrivateReference:
    """Collects a Scenario's private splits and their evaluation-model features (the costly part)."""
    tr_x, tr_y = scenario.tensors("private_train")
    te_x, te_y = scenario.tensors("private_test")
    return PrivateReference(tr_x, tr_y.long(), te_x, te_y.long(), extract_features(eval_model, tr_x, batch_size),
                            int(scenario.num_classes), bool(getattr(scenario, "allows_hflip", False)),
                            list(scenario.private_categories) if getattr(scenario, "identities", None) else None)


def scenario_from_attack(attack_meta: dict, source: str = "attack.json"):
    """The data Scenario the attacked target was trained on, from attack.json settings["data"]."""
    from ..data import DataConfig, load_scenario

    data = (attack_meta.get("settings") or {}).get("data")
    if not isinstance(data, dict):
        raise ValueError(f"{source}: settings.data must hold the target's data config (a mapping), "
                         f"got {type(data).__name__}")
    return load_scenario(validate(DataConfig, data, source=f"{source} settings.data"))


INITIAL_SELECTION = "initial selection (every candidate it kept, before optimisation)"
FINAL_SELECTED_BEFORE = "final-selected latents before optimisation"  # results.pt of attack results version 1


def load_initial_images(attack_dir: Path, images: torch.Tensor, labels: torch.Tensor):
    """What "before optimisation" is scored on: (images, labels, label) from results.pt, or None for attacks
    without an initial selection. Version 2 results hold every candidate PPA's initial selection kept
    (initial_selection_images / _labels); version 1 held only the final samples' pre-optimisation images
    (initial_images, row for row beside `images`), which depend on the final selection: they are scored
    as before and labelled FINAL_SELECTED_BEFORE."""
    path = Path(attack_dir) / "results.pt"
    results = load_checkpoint(path)
    initial = results.get("initial_selection_images")
    if initial is not None and initial.numel():
        init_labels = check_labels(results.get("initial_selection_labels", torch.empty(0)), initial.shape[0],
                                   name="results.pt initial_selection_labels")
        return check_images(initial, "results.pt initial_selection_images").float(), init_labels, INITIAL_SELECTION
    initial = results.get("initial_images")
    if initial is None or initial.numel() == 0:
        return None
    if initial.shape != images.shape:
        raise ValueError(f"{path}: initial_images has shape {tuple(initial.shape)} but "
                         f"images has {tuple(images.shape)}; they must match row for row")
    return check_images(initial, "results.pt initial_images").float(), labels, FINAL_SELECTED_BEFORE


def load_attack_results(attack_dir: Path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(attack.json contents, images (n, C, H, W) float32, labels (n,) int64), checked."""
    attack_dir = Path(attack_dir)
    meta_path = attack_dir / "attack.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} does not exist: is {attack_dir} an attack run directory?")
    meta = read_json(meta_path)
    results = load_checkpoint(attack_dir / "results.pt")
    for key in ("images", "labels"):
        if key not in results:
            raise ValueError(f"{attack_dir / 'results.pt'} lacks {key!r}; keys present: {sorted(results)}")
    images = check_images(results["images"], "results.pt images").float()
    labels = check_labels(results["labels"], images.shape[0], name="results.pt labels")
    if images.shape[0] < 2:
        raise ValueError(f"{attack_dir}: need at least 2 attack images to evaluate, got {images.shape[0]}")
    return meta, images, labels


def _subsample(n: int, limit: int, seed: int) -> torch.Tensor:
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def score_judges(images: torch.Tensor, labels: torch.Tensor, eval_model, ref: PrivateReference,
                 cfg: EvaluateConfig | None = None, second_model=None, logits: torch.Tensor | None = None,
                 feats: torch.Tensor | None = None) -> dict:
    """score_attack's judge keys alone (judges.py: intervals, per-class Acc@1, the nearest-neighbour judge and,
    with `second_model`, judge2 and both), e.g. to add them to an evaluation written before they existed
    without rerunning KES; `logits` / `feats`: the evaluation model's, when already computed."""
    cfg = cfg or EvaluateConfig()
    logits = predict_logits(eval_model, images, cfg.batch_size) if logits is None else logits
    feats = extract_features(eval_model, images, cfg.batch_size) if feats is None else feats
    nn = nearest_class_scores(feats, ref.train_feats, ref.train_labels, logits.shape[1])
    judges = {"eval_model": logits, "nn": nn}
    if second_model is not None:
        judges["judge2"] = predict_logits(second_model, images, cfg.batch_size)
    return judge_scores(judges, labels, cfg.class_bootstrap, cfg.seed)


def score_attack(images: torch.Tensor, labels: torch.Tensor, eval_model, ref: PrivateReference,
                 cfg: EvaluateConfig | None = None, initial=None, second_model=None) -> dict:
    """Every attack metric for attack images/labels (target label space) against the private reference.

    Returns flat keys: acc1, acc5, acc_category (identity scenarios: top-1 in the attacked identity's
    category), the same with suffix _initial (before optimisation, on `initial` = (images, labels, what
    they are) from load_initial_images; None without it) with n_initial and initial_scored_on,
    the judges (judges.py: acc1_ci_low / _ci_high, acc1_nn, acc5_nn with their intervals, acc1_per_class;
    with `second_model` also acc1_judge2, acc5_judge2, acc1_both, acc5_both and intervals),
    delta_eval, fid (fid_note when either set has fewer than FID_RELIABLE_N images), kid, kid_ci_low,
    kid_ci_high (kid.py), precision, recall, density, coverage (per attacked class, then averaged;
    prdc_per_class and prdc_skipped_classes beside them), kes_train, kes_test, plus n_images, classes
    and per-metric timings."""
    cfg = cfg or EvaluateConfig()
    timings = {}
    t = time.perf_counter()
    out: dict = {"n_images": int(images.shape[0]), "classes": sorted(labels.unique().tolist())}
    cats = ref.class_category
    logits = predict_logits(eval_model, images, cfg.batch_size)
    out.update(accuracy_from_logits(logits, labels, (1, 5), int(getattr(eval_model, "num_classes", logits.shape[1])),
                                    cats))
    before = (attack_accuracy(eval_model, initial[0], initial[1], topk=(1, 5), batch_size=cfg.batch_size,
                              class_category=cats)
              if initial is not None else dict.fromkeys(("acc1", "acc5", "acc_category")))
    out.update({f"{k}_initial": v for k, v in before.items()})
    out["n_initial"] = None if initial is None else int(initial[0].shape[0])
    out["initial_scored_on"] = None if initial is None else initial[2]
    timings["accuracy"] = time.perf_counter() - t

    t = time.perf_counter()
    fake = extract_features(eval_model, images, cfg.batch_size)
    out.update(score_judges(images, labels, eval_model, ref, cfg, second_model, logits, fake))
    out["delta_eval"] = nearest_class_distances(fake, labels, ref.train_feats, ref.train_labels).mean().item()
    attacked = torch.isin(ref.train_labels, labels.unique()).nonzero().squeeze(1)
    keep = attacked[_subsample(attacked.numel(), cfg.max_reference, cfg.seed)]
    out["fid"] = frechet_distance(ref.train_feats[keep], fake)
    out.update(kernel_inception_distance(ref.train_feats[keep], fake, cfg.kid_subsets, cfg.kid_subset_size,
                                         cfg.kid_bootstrap, cfg.seed))
    small = min(keep.numel(), fake.shape[0])
    out["fid_note"] = (f"FID on {fake.shape[0]} attack and {keep.numel()} real images: FID is biased upward at "
                       f"this sample size (under {FID_RELIABLE_N}); compare KID" if small < FID_RELIABLE_N else None)
    per_class = prdc_per_class(ref.train_feats[attacked], ref.train_labels[attacked], fake, labels, k=cfg.prdc_k)
    out.update({key: per_class[key] for key in PRDC_KEYS})
    out["prdc_per_class"] = per_class["per_class"]
    out["prdc_skipped_classes"] = per_class["skipped_classes"]
    timings["features"] = time.perf_counter() - t

    t = time.perf_counter()
    out.update(knowledge_extraction(images, labels, (ref.train_images[keep], ref.train_labels[keep]),
                                    (ref.test_images, ref.test_labels), ref.num_classes, cfg.kes, cfg.seed,
                                    image_size=ref.train_images.shape[-1], allows_hflip=ref.allows_hflip))
    timings["kes"] = time.perf_counter() - t
    out["timings"] = timings
    return out


def sampled_utility(target, reference: PrivateReference, cfg: EvaluateConfig) -> dict:
    """A MID target's utility with its bottleneck sampling (seeded with cfg.seed), as its authors evaluate
    it: test_acc_sampling, test_nll_sampling, ece_sampling; None for targets without a bottleneck."""
    from ..defenses.mid import sample_at_eval

    keys = ("test_acc", "test_nll", "ece")
    if not sample_at_eval(target, cfg.seed):
        return {f"{k}_sampling": None for k in keys}
    try:
        utility = target_utility(target, reference.test_images, reference.test_labels,
                                 batch_size=cfg.batch_size, n_bins=cfg.ece_bins)
    finally:
        sample_at_eval(target, None)
    return {f"{k}_sampling": utility[k] for k in keys}


def evaluate_attack(attack_dir: str | Path, eval_model, cfg: EvaluateConfig | None = None,
                    reference: PrivateReference | None = None, out_path: str | Path | None = None,
                    eval_model_path: str | None = None, second_model=None, second_model_path: str | None = None,
                    target_path: str | Path | None = None) -> dict:
    """Scores the attack in `attack_dir` and writes the result (default attack_dir/evaluation.json).

    Adds the target's utility on the private test set (test_acc, test_nll, ece, from the target named
    in attack.json; for MID targets also with the bottleneck sampling, suffix _sampling) and the
    evaluation model's own test accuracy, which bounds how far its attack accuracy can be trusted (and the
    second judge's, eval_model_test_acc_judge2, when `second_model` is given). "judges" records which judge
    is primary (the evaluation model: acc1 keeps its meaning) and what the others are. `target_path`: the
    attacked model's run dir or checkpoint, when the caller knows it better than attack.json (which records
    the path as the attack was given it, relative to the working directory of that run)."""
    from ..models import load_classifier

    cfg = cfg or EvaluateConfig()
    attack_dir = Path(attack_dir)
    meta, images, labels = load_attack_results(attack_dir)
    target_path = target_path or meta.get("target")
    if not target_path:  # checked before the expensive part
        raise ValueError(f"{attack_dir / 'attack.json'}: 'target' must name the attacked model's run dir or checkpoint")
    if reference is None:
        reference = build_reference(eval_model, scenario_from_attack(meta, str(attack_dir / "attack.json")),
                                    cfg.batch_size)
    check_labels(labels, labels.numel(), reference.num_classes, "results.pt labels")
    if second_model is not None and int(second_model.num_classes) != reference.num_classes:
        raise ValueError(f"the second evaluation model {second_model_path or ''} has {second_model.num_classes} "
                         f"classes; the private data has {reference.num_classes}")
    result = {"attack_dir": str(attack_dir), "attack": meta.get("attack"), "eval_model": eval_model_path,
              "feature_extractor": FEATURE_EXTRACTOR, "settings": cfg.model_dump(mode="json"),
              "judges": {"primary": "eval_model", "eval_model": eval_model_path, "nn": NN_JUDGE,
                         "judge2": None if second_model is None else (second_model_path or "given"),
                         "both": None if second_model is None else "eval_model and judge2 both put the attacked "
                                                                   "class first (top 5 for acc5_both)",
                         "interval": f"acc1*_ci_low/high: {100 * CI_LEVEL:g} % percentile interval over "
                                     f"{cfg.class_bootstrap} resamples of the attacked classes (seed {cfg.seed})"}}
    result.update(score_attack(images, labels, eval_model, reference, cfg,
                               load_initial_images(attack_dir, images, labels), second_model))

    t = time.perf_counter()
    target = load_classifier(target_path)
    result.update(target_utility(target, reference.test_images, reference.test_labels,
                                 batch_size=cfg.batch_size, n_bins=cfg.ece_bins))
    result.update(sampled_utility(target, reference, cfg))
    result["eval_model_test_acc"] = attack_accuracy(eval_model, reference.test_images, reference.test_labels,
                                                    topk=(1,), batch_size=cfg.batch_size)["acc1"]
    if second_model is not None:
        result["eval_model_test_acc_judge2"] = attack_accuracy(second_model, reference.test_images, reference.test_labels,
                                                               topk=(1,), batch_size=cfg.batch_size)["acc1"]
    result["timings"]["utility"] = time.perf_counter() - t

    out_path = Path(out_path) if out_path else attack_dir / "evaluation.json"
    write_json(out_path, result)
    if out_path.parent == attack_dir:
        update_manifest(attack_dir, evaluation=out_path.name)
    return result
