"""report.md / report.html of an audit: a plain-language summary with the measured numbers, the metrics
table (your model and, with --compare nls, the retrained models), the classes that leak most with their
attack images beside real ones, and the time of every stage. Rendered with the experiment's renderers."""
from __future__ import annotations

from pathlib import Path

from ..experiment.report import _stage_rows, image_grid, parallel_sentence, render_html, render_markdown
from ..metrics import FEATURE_EXTRACTOR
from ..runio import write_text
from .leak import class_leakage, real_delta
from .suite import worst_case_sentence
from .uncertainty import movement_sentence

COLUMNS = [("test_acc", "private test acc %", True), ("ece", "ECE %", True), ("acc1", "attack Acc@1 %", True),
           ("acc5", "attack Acc@5 %", True), ("delta_eval", "delta_eval", False), ("fid", "FID", False),
           ("precision", "precision %", True), ("recall", "recall %", True), ("density", "density", False),
           ("coverage", "coverage %", True), ("kes_test", "KES test %", True)]


def _num(value, pct: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}" if pct else f"{value:.2f}"


def _range(lo, hi) -> str:
    return "n/a" if lo is None else f"{100 * lo:.1f}-{100 * hi:.1f}"


def _uncertainty_cells(row: dict) -> list[str]:
    """The table's Acc@1 interval over classes and, with --repeats, its range over attack seeds."""
    rep = row.get("repeats")
    return [_range(row.get("acc1_ci_low"), row.get("acc1_ci_high")),
            f"{_range(rep['min'], rep['max'])} (sd {100 * rep['sd']:.1f})" if rep else "one seed"]


def _attack_name(results: dict, row: dict) -> str:
    suite = results.get("attack_suite")
    return f"attack {row['attack']} of the {suite} suite" if suite else row["attack"].upper()


def _summary(results: dict, rows: list[dict], leaks: list[dict], real: float) -> list[tuple]:
    n_cls = len(results["classes"])
    chance = 1 / n_cls
    main = rows[0]
    leaky = [r for r in leaks if r["acc1"] >= 0.5]
    acc5 = f", among its top 5 in {_num(main['acc5'], True)} %" if main.get("acc5") is not None else ""
    text = [
        f"An attacker who holds your model and {results['num_public']} public images ran {_attack_name(results, main)} "
        f"against each of your {n_cls} private classes and kept {main['n_images']} images "
        f"({main['n_images'] // n_cls} per class). An evaluation model trained on your private images "
        f"({_num(results['eval_model_test_acc'], True)} % accurate on held-out ones) recognised the attacked class "
        f"in {_num(main['acc1'], True)} % of them{acc5} (chance: {100 * chance:.1f} %).",
        movement_sentence(main, n_cls),
        *([worst_case_sentence(results)] if results.get("attack_suite") else []),
        f"In that model's feature space the attack images lie at a mean squared distance (delta_eval) of "
        f"{main['delta_eval']:.2f} from the nearest private image of their class; a real, unseen image of the "
        f"class lies at {real:.2f}. FID against the private images: {main['fid']:.1f}.",
        f"{len(leaky)} of {n_cls} classes are recognised in at least half of their attack images; most leaking: "
        + ", ".join(f"{r['name']} ({100 * r['acc1']:.0f} %)" for r in leaks[:3]) + ".",
    ]
    if main.get("test_acc") is not None and main["test_acc"] < min(0.5, 2 * chance):
        text.insert(0, f"WARNING: your model classifies only {_num(main['test_acc'], True)} % of the private test "
                       f"images correctly (chance {100 * chance:.1f} %; {results['test_acc_source']}). Check that the sorted class folder names are "
                       "the model's label order and that the input contract (size, range, mean, std) is right; "
                       "the numbers below are not meaningful otherwise.")
    hard = next((r for r in rows if r["key"] == "retrained_hard" and r["attack"] == main["attack"]), None)
    nls = next((r for r in rows if r["key"] == "retrained_nls" and r["attack"] == main["attack"]), None)
    if hard and nls:
        d_acc = 100 * (nls["acc1"] - hard["acc1"])
        d_test = 100 * (nls["test_acc"] - hard["test_acc"])
        text.append(
            f"Retrained with the same recipe, your architecture reaches {_num(hard['test_acc'], True)} % test accuracy "
            f"with hard labels and {_num(nls['test_acc'], True)} % with negative label smoothing (alpha "
            f"{nls['alpha']:+g}), {d_test:+.1f} points; the attack's Acc@1 goes from {_num(hard['acc1'], True)} % "
            f"to {_num(nls['acc1'], True)} % ({d_acc:+.1f} points) and delta_eval from {hard['delta_eval']:.2f} to "
            f"{nls['delta_eval']:.2f}. This is one training seed and "
            + (f"{len(nls['repeats']['acc1'])} attack seeds (their spread is in the table)" if nls.get("repeats")
               else "one attack seed") + ": differences of a few points "
            "are within seed noise (3-14 points across seeds in this package's Fashion-MNIST study).")
    return [("p", t) for t in text]


def write_report(out: Path, results: dict, cfg, scenario, eval_model, reference) -> None:
    out = Path(out)
    rows = results["rows"]
    first = results["attacks"][0]
    leaks = class_leakage(out / rows[0]["attack_dir"], eval_model, reference, scenario.class_names)
    results["leakage"] = leaks
    real = real_delta(eval_model, reference)
    results["real_delta_eval"] = real
    model = results["model"]
    blocks: list[tuple] = [("h1", "Model inversion audit")]
    blocks.append(("p", f"Model: {model['kind']} {model.get('path') or model.get('import')}; input contract: "
                        f"{results['contract']}. Private data: {results['private']} ({len(results['classes'])} "
                        f"classes, {results['num_private_train']} images to train the evaluation model and score "
                        f"the attack, {results['num_private_test']} held out). Public data (the attacker's only "
                        f"images): {results['public']} ({results['num_public']} images)."
                        + (f" Batches: {results['target_batch']}." if results.get("target_batch") else "")))
    blocks.append(("h2", "Summary"))
    blocks += _summary(results, rows, leaks, real)
    blocks.append(("h2", "Results"))
    header = (["model", "attack"] + [title for _, title, _ in COLUMNS]
              + ["Acc@1 95 % interval over classes", "Acc@1 over attack seeds (min-max)"])
    body = [[r["model"], r["attack"]] + [_num(r.get(k), pct) for k, _, pct in COLUMNS] + _uncertainty_cells(r)
            for r in rows]
    blocks.append(("table", header, body))
    blocks.append(("p", f"Private test acc: {results['test_acc_source']}" + (
                        "; your model may have trained on those images, so for it this can overstate its test "
                        "accuracy (the retrained models never saw them); pass --private-test DIR to measure it on "
                        "images it never saw" if "--private-test" not in results["test_acc_source"] else "")
                        + ". Attack Acc@1/@5: share of attack images the evaluation model assigns to the "
                        "attacked class (Acc@5 n/a with 5 classes or fewer); its interval resamples the attacked "
                        "classes (2.5-97.5 % percentiles), its range over attack seeds comes from --repeats N. delta_eval: squared feature distance to "
                        "the nearest private image of the class (lower = closer to real data). Precision/recall/"
                        "density/coverage per class, averaged (k = 3). KES: accuracy on private test images of a "
                        f"student trained only on the attack images. Feature space: {FEATURE_EXTRACTOR}."))
    k = cfg.report.leak_classes
    blocks.append(("h2", f"Classes that leak most ({first.upper()} against your model)"))
    blocks.append(("table", ["class", "attack images", "attack Acc@1 %", "delta_eval", "target confidence %"],
                   [[r["name"], str(r["n"]), _num(r["acc1"], True), _num(r["delta_eval"], False),
                     _num(r["target_confidence"], True)] for r in leaks[:max(k, 10)]]))
    if len(leaks) > max(k, 10):
        blocks.append(("p", f"{len(leaks) - max(k, 10)} less leaking classes: see audit.json leakage."))
    top = [r["class"] for r in leaks[:k]]
    real_images = scenario.tensors("private_train")
    for r in rows:
        if r["attack"] != first:
            continue
        fname = f"grid_{r['key']}_{first}.png"
        image_grid(out / r["attack_dir"], real_images, scenario.class_names, cfg.report.images_per_class,
                   f"{r['model']}: {first.upper()} images (left), real private images (right)", out / fname,
                   classes=top)
        blocks.append(("img", fname, f"{r['model']}: attack images of the {k} most leaking classes (left) beside "
                                     "real private images (right)"))
    blocks.append(("h2", "Wall time"))
    blocks.append(("table", ["stage", "seconds this run", "how"], _stage_rows(results["timings"])))
    graph = {k: t for k, t in results["timings"]["stages"].items() if "after" in t or t.get("part_of")}
    blocks.append(("p", f"Stages: {results['timings']['stages_wall_s']:.1f} s with {results['num_threads']} torch "
                        f"thread(s) per stage; {parallel_sentence(graph, results['num_threads'])} Stages reused on a "
                        "rerun report the time they took when they ran."))
    blocks.append(("h2", "Notes"))
    blocks.append(("p", f"Target features: {results['target_features']} (the metrics use the evaluation model's "
                        "features, not the target's)."))
    write_text(out / "report.md", render_markdown(blocks))
    write_text(out / "report.html", render_html(blocks, "lsmia audit report"))
