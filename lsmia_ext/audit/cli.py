"""`lsmia audit --model MODEL --private DIR --public DIR --out RUN_DIR [--workers N | --scheduler ADDRESS]
[...]`: how much a model inversion attack recovers from your classifier, and (--compare nls) what negative
label smoothing would change."""
from __future__ import annotations

import argparse

from ..cli_args import add_config_args, add_executor_args, executor_from_args

from .config import DEFAULT_AUDIT_CONFIG


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="TorchScript file, torch.export .pt2 file, YAML model spec (kind: module for your own "
                             "code) or an `lsmia train` run directory")
    parser.add_argument("--private", required=True, metavar="DIR", help="private images, one sub-folder per class "
                        "(sorted folder names = the model's class order)")
    parser.add_argument("--private-test", default=None, metavar="DIR",
                        help="held-out private images the model never trained on, the same class sub-folders as "
                             "--private: the model's test accuracy is measured on them (default: a held-back slice "
                             "of --private, which may include the model's training images)")
    parser.add_argument("--public", required=True, metavar="DIR",
                        help="public images (no labels needed; a flat folder or sub-folders)")
    parser.add_argument("--prior", default=None, metavar="RUN_DIR", help="reuse a generator prior")
    parser.add_argument("--eval-model", default=None, metavar="RUN_DIR", help="reuse an evaluation model")
    parser.add_argument("--attacks", default=None, help="comma-separated: ppa,gmi,miface (default ppa)")
    parser.add_argument("--attack-suite", default=None, metavar="NAME",
                        help="run every attack of a suite instead (adaptive: PPA and the variants that adapt to a "
                             "defense; adaptive+S3: and the strong attack on the surrogates alone, against "
                             "trapdoor defenses; lsmia_ext/attacks/suite.py) and report the worst case over them")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="run every attack with N attack seeds (the configured seed and the N-1 after it) and "
                             "report the spread of attack Acc@1 beside its interval over classes (default 1)")
    parser.add_argument("--compare", choices=["nls"], default=None,
                        help="retrain the architecture with and without negative label smoothing, side by side")
    contract = parser.add_argument_group("input contract (required for model files; YAML specs may state it)")
    contract.add_argument("--image-size", type=int, default=None, help="side of the square input images")
    contract.add_argument("--channels", type=int, choices=[1, 3], default=None)
    contract.add_argument("--num-classes", type=int, default=None, help="checked against the model's output")
    contract.add_argument("--value-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                          help="pixel range the model expects before normalisation (default 0 1)")
    contract.add_argument("--mean", type=float, nargs="+", default=None, help="normalisation mean (default 0)")
    contract.add_argument("--std", type=float, nargs="+", default=None, help="normalisation std (default 1)")
    contract.add_argument("--trust-pickle", action="store_true", default=None,
                          help="allow a pickled whole-module file (runs code stored in the file)")
    add_config_args(parser, set_example="attacks.ppa.set.optim.steps=50",
                    config_help=f"audit config name or YAML (default {DEFAULT_AUDIT_CONFIG})",
                    out_help="run directory; rerunning resumes")
    add_executor_args(parser)


def run(args: argparse.Namespace) -> int:
    from .config import load_audit_config
    from .pipeline import run_audit
    from .suite import per_attack_text
    from .uncertainty import interval_text, seeds_text

    cfg = load_audit_config(args.config, args.overrides)
    contract = {"image_size": args.image_size, "channels": args.channels, "num_classes": args.num_classes,
                "value_range": args.value_range, "mean": args.mean, "std": args.std,
                "trust_pickle": args.trust_pickle}
    attacks = None if args.attacks is None else tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    results = run_audit(cfg, args.model, args.private, args.public, args.out, prior=args.prior,
                        eval_model=args.eval_model, private_test=args.private_test, attacks=attacks,
                        compare=args.compare, contract=contract, executor=executor_from_args(args, cfg.num_threads),
                        repeats=args.repeats, attack_suite=args.attack_suite)
    main = results["rows"][0]
    print(f"attack Acc@1 {100 * main['acc1']:.1f} %{interval_text(main)}{seeds_text(main)} (chance "
          f"{100 / len(results['classes']):.1f} %); "
          f"wrote {args.out}/report.md, report.html, audit.json in {results['timings']['total_wall_s']:.0f} s")
    if args.attack_suite:
        worst = results["worst_case"]["model"]
        print(f"worst case over the {args.attack_suite} suite: {worst['attack']}, attack Acc@1 "
              f"{100 * worst['acc1']:.1f} %{interval_text(worst)} ({per_attack_text(worst)})")
    return 0
