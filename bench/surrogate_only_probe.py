"""Exploratory, post hoc (issue 29): does Trap-MID's lead survive an attacker who never takes a gradient of
the target? Trap-MID plants triggers that the target's own gradients lead an attack to; an attacker who
knows this can query the target only for its outputs on natural images, distil surrogates from them (the
study's A2/A3 surrogates: small_cnn_w8 and small_cnn_w6, distilled on public and prior images, which hold
no trigger), and attack the surrogates alone.

"S3" here is the suite's S3 (lsmia_ext/attacks/suite.py): A3 (logit-margin loss and selections, the stronger
budget) with augmentation.include_target false, so the loss and both selections average over the two
surrogates alone. It reuses each seed shard's A3 surrogates and judges the images with the study's two
evaluation models, as the study's evaluation stage does. (The committed numbers were run by the first form of
this script, which put the first surrogate in the target's place: the same ensemble, loss and selections; the
library form gives the same images, checked on seeds 0 and 3.) Written after the study's results
were read: it is not part of the primary comparison and decides nothing.

    python bench/surrogate_only_probe.py --runs runs --seeds 0 1 2 --targets trap_0.6 ls_neg_0.02 --out runs/s3
    python bench/surrogate_only_probe.py --out runs/s3 --summary docs/defenses2025/results.json

Needs the seed shards' run directories (runs/d25-sS: prior, eval_model, eval_model2, targets, surrogates);
prints one line per target and seed and writes OUT/SEED/NAME/{results.pt, attack.json, evaluation.json}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

CONFIG = "experiment-fmnist-defenses2025"


def surrogate_dir(run: Path, name: str, seed: int) -> Path:
    found = sorted((run / "surrogates").glob(f"{name}_seed{seed}_*"))
    if len(found) != 1:
        raise SystemExit(f"{run}/surrogates: expected one surrogate stage of {name}_seed{seed}, found {len(found)}")
    return found[0]


def probe(run: Path, name: str, seed: int, out: Path, cfg, stages) -> dict:
    from lsmia_ext.attacks import run_attack
    from lsmia_ext.attacks.surrogates import load_surrogates
    from lsmia_ext.experiment.graph import eval_reference
    from lsmia_ext.metrics import evaluate_attack
    from lsmia_ext.models import load_classifier
    from lsmia_ext.priors import load_generator

    a3 = stages.attack_of(name, seed, "A3")
    acfg = a3.model_copy(update={"augmentation": a3.augmentation.model_copy(update={"include_target": False})})
    target_dir = run / "targets" / f"{name}_seed{seed}"
    run_attack(acfg, load_classifier(target_dir), load_generator(run / "prior"), out, data_config=cfg.data,
               surrogates=load_surrogates(surrogate_dir(run, name, seed)), target_path=str(target_dir),
               prior_path=str(run / "prior"))
    model, ref, _ = eval_reference(run / "eval_model", "probe", cfg.evaluate, cfg.data)
    return evaluate_attack(out, model, cfg.evaluate, reference=ref, out_path=out / "evaluation.json",
                           eval_model_path=str(run / "eval_model"), target_path=target_dir,
                           second_model=load_classifier(run / "eval_model2"))


def summary(out: Path, results: Path) -> dict:
    """Trap-MID against negative LS at the study's primary cost, read by the study's own rule
    (primary.primary_comparison), each target's worst case taken over A0, A3 and S3; only targets that S3
    attacked on every seed of results.json take part. Holm runs over this one comparison: exploratory.
    {"s3": one row per target and seed (S3's judges, FID), "primary": the comparison}."""
    from lsmia_ext.experiment.config import ExperimentConfig
    from lsmia_ext.experiment.primary import primary_comparison

    study = json.loads(results.read_text())
    cfg = ExperimentConfig.model_validate(study["settings"]["experiment"])
    seeds = sorted({r["seed"] for r in study["rows"]})
    evals = {(p.parent.name, int(p.parent.parent.name)): json.loads(p.read_text())
             for p in out.glob("*/*/evaluation.json")}
    names = {n for n, _ in evals if all((n, s) in evals for s in seeds)}
    rows = [{**r, "attack_acc1": max(r["attack_acc1"], evals[(r["name"], r["seed"])]["acc1"])}
            for r in study["adaptive"]["worst_case_rows"] if r["name"] in names]
    targets = [t for t in cfg.targets if t.name in names]
    rep = cfg.report
    s3 = [{"name": n, "seed": s, **{k: evals[(n, s)].get(k) for k in ("acc1", "acc1_judge2", "acc1_nn", "fid")}}
          for n, s in sorted(evals) if n in names]
    return {"s3": s3, "primary": primary_comparison(rows, targets, rep.primary_cost, rep.primary_reference, rep.max_gap)}


def main(argv=None) -> None:
    from lsmia_ext.experiment.config import load_experiment_config
    from lsmia_ext.experiment.stages import resolve_stages

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="folder holding the shards' d25-sS run dirs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[])
    ap.add_argument("--targets", nargs="+", default=[], help="entry names of the study, e.g. trap_0.6")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--summary", type=Path, default=None, metavar="RESULTS_JSON",
                    help="instead of attacking: the primary-rule comparison of OUT's evaluations with this merged "
                         "study, printed and written to --save")
    ap.add_argument("--save", type=Path, default=None, help="with --summary: write it (JSON) here")
    args = ap.parse_args(argv)
    if args.summary is not None:
        result = summary(args.out, args.summary)
        for e in result["primary"]:
            print(json.dumps({k: e.get(k) for k in ("family", "seeds", "unread", "mean", "ci", "p_holm", "verdict")}))
        if args.save is not None:
            from lsmia_ext.runio import write_json

            write_json(args.save, result)
        return
    for seed in args.seeds:
        cfg = load_experiment_config(CONFIG, overrides={"seeds": [seed]})
        stages = resolve_stages(cfg)
        for name in args.targets:
            if name not in {e.name for e in cfg.targets}:
                raise SystemExit(f"--targets: {name!r} is not an entry of {CONFIG}")
            out = args.out / str(seed) / name
            r = probe(args.runs / f"d25-s{seed}", name, seed, out, cfg, stages)
            print(json.dumps({"seed": seed, "target": name, **{k: r.get(k) for k in ("acc1", "acc1_judge2", "acc1_nn",
                                                                                    "fid", "test_acc")}}), flush=True)


if __name__ == "__main__":
    main()
