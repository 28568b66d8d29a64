"""`lsmia evaluate`: every metric on one attack run directory -> RUN_DIR/evaluation.json."""
from __future__ import annotations

import json
from pathlib import Path

from ..cli_args import add_config_args
from ..errors import UserInputError


def add_arguments(parser) -> None:
    parser.add_argument("--attack", required=True, metavar="RUN_DIR", help="attack run directory (attack.json, results.pt)")
    parser.add_argument("--eval-model", required=True, metavar="CKPT_OR_RUN_DIR",
                        help="evaluation classifier (the primary judge): a model.pt or the run directory holding it")
    parser.add_argument("--second-eval-model", default=None, metavar="CKPT_OR_RUN_DIR",
                        help="a second judge (another architecture and seed trained on the private classes): adds "
                             "acc1_judge2 and acc1_both (images both judges assign to the attacked class)")
    add_config_args(parser, out_required=False, out_metavar="FILE", set_example="kes.steps=500",
                    config_help="YAML with evaluation settings (see EvaluateConfig); defaults when omitted",
                    out_help="where to write the JSON (default RUN_DIR/evaluation.json)")


def run(args) -> int:
    from ..config import apply_overrides, load_config, validate
    from ..models import load_classifier
    from .evaluate import EvaluateConfig, evaluate_attack

    if not Path(args.attack).is_dir():  # before the (slower) model loading
        raise FileNotFoundError(f"attack run directory {args.attack} does not exist")
    if args.out is not None and Path(args.out).is_dir():
        raise UserInputError(f"--out {args.out} is a directory; give the JSON file to write")
    if args.config:
        cfg = load_config(EvaluateConfig, args.config, args.overrides)
    else:
        cfg = validate(EvaluateConfig, apply_overrides({}, args.overrides), source="--set")
    eval_model = load_classifier(args.eval_model)
    second = None if args.second_eval_model is None else load_classifier(args.second_eval_model)
    result = evaluate_attack(args.attack, eval_model, cfg, out_path=args.out, eval_model_path=str(args.eval_model),
                             second_model=second, second_model_path=args.second_eval_model)
    shown = {k: v for k, v in result.items()
             if isinstance(v, (int, float)) or v is None or k in ("fid_note", "initial_scored_on")}
    print(json.dumps(shown, indent=2))
    return 0
