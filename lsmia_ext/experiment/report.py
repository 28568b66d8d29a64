"""report.md and report.html of an experiment: table (mean +- std over seeds), plots against alpha,
image grids (attack results beside real private images), the paired claims and their computed verdict
(claims_report.py), an optional ablation study's claims, timings.

Both files are rendered from one list of blocks, so they always say the same thing.
"""
from __future__ import annotations

import html
import os
import statistics
from pathlib import Path

import torch

from ..runio import save_figure, write_text
from .adaptive_report import adaptive_blocks
from .claims_report import ablation_blocks, claims_blocks, verdict_sentence
from .controls_report import controls_blocks
from .matched_report import matched_blocks
from .primary_report import primary_blocks
from .tradeoff import tradeoff_blocks
from .trend_report import trend_blocks

METRICS = [  # (results.json row key, column title)
    ("test_acc", "test acc"), ("val_acc", "val acc"), ("ece", "ECE"), ("attack_acc1", "attack Acc@1"), ("attack_acc5", "attack Acc@5"),
    ("attack_acc1_initial", "Acc@1 initial"), ("attack_acc5_initial", "Acc@5 initial"),
    ("attack_acc_category", "right category"), ("train_acc", "train acc"),
    ("delta_eval", "delta_eval"), ("fid", "FID"), ("kid", "KID"), ("precision", "precision"), ("recall", "recall"),
    ("density", "density"), ("coverage", "coverage"), ("kes_train", "KES train"), ("kes_test", "KES test"),
]


def summarise(rows: list[dict]) -> list[dict]:
    """One entry per target name (in row order): alpha, seeds, and (mean, std or None, n) per metric."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    out = []
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        entry = {"name": name, "alpha": mine[0]["alpha"], "seeds": [r["seed"] for r in mine]}
        for key, _ in METRICS:
            vals = [r[key] for r in mine if r.get(key) is not None]
            entry[key] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None) if vals else None
        out.append(entry)
    return out


def _fmt(stat, pct: bool) -> str:
    if stat is None:
        return "n/a"
    mean, std = stat
    scale = 100.0 if pct else 1.0
    digits = 1 if pct else 3
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "")


PERCENT = {"test_acc", "val_acc", "train_acc", "ece", "attack_acc1", "attack_acc5", "attack_acc1_initial", "attack_acc5_initial",
           "attack_acc_category", "precision", "recall", "coverage", "kes_train", "kes_test"}


def _cell(row: dict, key: str) -> str:
    """A per-seed cell; attack Acc@1 with its bootstrap-over-classes interval when the row has one."""
    text = _fmt(None if row.get(key) is None else (row[key], None), key in PERCENT)
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if key == "attack_acc1" and low is not None and high is not None:
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text


def results_table(summary: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["target", "alpha", "seeds"] + [title + (" %" if key in PERCENT else "") for key, title in METRICS]
    body = [[e["name"], f"{e['alpha']:+g}", str(len(e["seeds"]))] + [_fmt(e[k], k in PERCENT) for k, _ in METRICS]
            for e in summary]
    return header, body


def plot_against_alpha(rows: list[dict], key: str, ylabel: str, path: Path) -> Path:
    """Every seed as a faint dot, the mean (and std bar when several seeds) per target entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for e in summarise(rows):
        pts = [r[key] for r in rows if r["name"] == e["name"] and r[key] is not None]
        if not pts:
            continue
        ax.scatter([e["alpha"]] * len(pts), [100 * p for p in pts], s=12, alpha=0.35, color="grey")
        mean, std = e[key]
        ax.errorbar([e["alpha"]], [100 * mean], yerr=None if std is None else [100 * std], fmt="o", capsize=4,
                    label=e["name"])
    ax.set_xlabel("label smoothing alpha")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(path, fig)


def _per_class(images: torch.Tensor, labels: torch.Tensor, classes: list[int], k: int, seed: int) -> torch.Tensor:
    """k images of each class in class order (a seeded pick; fewer than k are padded with blanks)."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in classes:
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)[:k]]
        chosen = images[idx]
        if chosen.shape[0] < k:
            chosen = torch.cat([chosen, torch.ones(k - chosen.shape[0], *images.shape[1:])])
        picked.append(chosen)
    return torch.cat(picked)


def image_grid(attack_dir: Path, real: tuple[torch.Tensor, torch.Tensor], class_names: list[str], k: int,
               title: str, path: Path, classes: list[int] | None = None) -> Path:
    """Left: k attack images per attacked class (or per class of `classes`, in that order); right: k real
    private training images of that class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F
    from torchvision.utils import make_grid

    from ..metrics import load_attack_results

    _, images, labels = load_attack_results(attack_dir)
    classes = sorted(labels.unique().tolist()) if classes is None else list(classes)
    real_x, real_y = real
    if images.shape[-1] != real_x.shape[-1]:  # the generator's resolution may differ from the data's
        images = F.interpolate(images, size=real_x.shape[-2:], mode="bilinear", align_corners=False)
    panels = [("attack results", _per_class(images, labels, classes, k, 0)),
              ("real private images", _per_class(real_x, real_y, classes, k, 0))]
    fig, axes = plt.subplots(1, 2, figsize=(2 * (0.5 * k + 0.8), 0.5 * len(classes) + 0.8))
    for i, (ax, (name, imgs)) in enumerate(zip(axes, panels)):
        grid = make_grid(imgs.float().clamp(0, 1), nrow=k, padding=2, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if imgs.shape[1] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        cell = grid.shape[1] / len(classes)
        ax.set_yticks([cell * (r + 0.5) for r in range(len(classes))] if i == 0 else [])
        if i == 0:  # class names once, on the left, so they never run into the real images
            ax.set_yticklabels([class_names[c] if c < len(class_names) else str(c) for c in classes], fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(path, fig)


def budget_rows(stages: dict) -> list[list[str]]:
    """The budgets that decide the cost and strength of each stage, read from the resolved configs."""
    prior, ev = stages["prior"], stages["eval_model"]
    target = next(iter(stages["targets"].values()))
    attack = next(iter(stages["attacks"].values()))
    return [
        ["prior", f"{prior['train']['steps']} steps x {prior['train']['batch_size']} images, z/w "
                  f"{prior['network']['z_dim']}/{prior['network']['w_dim']}"],
        ["evaluation model", f"{ev['model']['name']}, {ev['epochs']} epochs, alpha {ev['loss']['alpha']:+g}"],
        ["targets", f"{target['model']['name']}, {target['epochs']} epochs, batch {target['batch_size']}, "
                    f"{target['optim']['name']} lr {target['optim']['lr']:g} wd {target['optim']['weight_decay']:g}, "
                    f"alpha warm-up {target['loss']['warmup']} + ramp {target['loss']['ramp']} epochs, "
                    f"{target['data'].get('train_per_class') or 'all'} images per class"],
        ["attack", f"{attack['attack']}: candidates {attack['initial']['candidates']}, keep "
                   f"{attack['initial']['keep']}, {attack['optim']['steps']} steps ({attack['optim']['loss']}, lr "
                   f"{attack['optim']['lr']:g}, betas {tuple(attack['optim']['betas'])}), final keep "
                   f"{attack['final']['keep']} per class over {attack['final']['transforms']} views"],
    ]


def _stage_rows(timings: dict) -> list[list[str]]:
    rows = []
    for stage, t in timings["stages"].items():
        how = "reused (ran earlier in {:.1f} s)".format(t["original_wall_s"]) if t["reused"] else "ran"
        how = f"{how}: {t['shipped']}" if t.get("shipped") else how
        rows.append([stage, f"{t['wall_s']:.1f}", how])
    return rows


def own_stages(stages: dict) -> dict:
    """The timings that are stages of their own (the private reference is `part_of` an evaluation)."""
    return {k: t for k, t in stages.items() if not t.get("part_of")}


def critical_path(stages: dict) -> tuple[float, list[str]]:
    """The longest chain of stages by this run's seconds (each stage's `after` lists what it waited for):
    the wall time no number of workers can beat. Returns (seconds, stage keys in order)."""
    best: dict[str, tuple[float, list[str]]] = {}
    for key, t in own_stages(stages).items():  # recorded after the stages they waited for
        before = max((best[d] for d in t.get("after", ()) if d in best), default=(0.0, []))
        best[key] = (before[0] + t["wall_s"], [*before[1], key])
    return max(best.values(), default=(0.0, []))


def core_seconds(stages: dict, threads: int) -> float:
    """The seconds of one core the stages of this run took (reused stages count their reuse)."""
    return threads * sum(t["wall_s"] for t in own_stages(stages).values())


def parallel_sentence(stages: dict, threads: int) -> str:
    """The stages' core-seconds and critical path, in words."""
    path_s, path = critical_path(stages)
    core_s = core_seconds(stages, threads)
    return (f"{core_s:.1f} core-seconds in all; critical path {path_s:.1f} s ({' -> '.join(path)}), the least any "
            "number of workers could take.")


def scenario_sentence(cfg, scenario) -> str:
    """What is private and what the prior saw, in words."""
    ids = cfg.data.identities
    if ids is not None:
        return (f"Scenario: {cfg.data.name} identity-like classes: each of {len(set(scenario.private_categories))} "
                f"categories cut into {ids.per_category} k-means sub-classes (PCA {ids.pca_dim}, k-means seed "
                f"{ids.kmeans_seed}), {ids.private_per_category} per category private (split seed {ids.split_seed}): "
                f"{scenario.num_classes} private identities ({', '.join(scenario.class_names)}); the prior saw only "
                f"the {scenario.num_public_classes} public sub-classes of the same categories (assignment sha256 "
                f"{scenario.identities.sha256[:12]})")
    return (f"Scenario: {cfg.data.name}, private classes {cfg.data.private_classes} ({', '.join(scenario.class_names)}), "
            f"public classes {cfg.data.public_classes or 'from another dataset'}")


def prior_sentence(prior: dict) -> str:
    if prior.get("fid") is None:
        return ""
    text = (f"Prior: FID {prior['fid']:.2f} against held-out public images (real-vs-real floor "
            f"{prior['fid_public_train_vs_test']:.2f}) after {prior['steps']} steps.")
    shares, real = prior.get("category_share_prior"), prior.get("category_share_public_test")
    if shares and real:
        parts = ", ".join(f"{c} {100 * shares[c]:.0f} % ({100 * real[c]:.0f} %)" for c in real)
        text += (f" Share of its samples per category (real public share in brackets): {parts}; worst ratio "
                 f"{prior['category_share_min_ratio']:.2f}.")
    return text


def instruments_sentence(stages: dict) -> str:
    """Which of the study's instruments (prior, evaluation models) came shipped with the package: a sentence
    and a space, or "" when none did."""
    shipped = [f"{key}: {t['shipped']}" for key, t in stages.items() if t.get("shipped")]
    return (f"Not trained in this run, from the package (lsmia_ext/instruments, sha256-checked): {'; '.join(shipped)}; "
            "`lsmia experiment --train-instruments` trains them. " if shipped else "")


def grid_blocks(out: Path, results: dict, cfg, scenario) -> list[tuple]:
    """Attack images beside real ones for every entry of the first seed, read from the attack directory
    results.json `runs` names (relative to OUT; a merge of seed shards names the shard's); when one of
    them is not on this machine (a shard's run directory left behind), one line says so instead."""
    seed = cfg.seeds[0]
    attacks = (results.get("adaptive") or {}).get("attacks") or [None]
    blocks: list[tuple] = [("h2", f"Attack results beside real private images (seed {seed}"
                                  f"{'' if attacks[0] is None else ', attack ' + attacks[0]})")]
    where = {(r["name"], r["seed"]): Path(os.path.normpath(out / r["attack"])) for r in results["runs"]
             if r.get("attack_name") == attacks[0]}
    dirs = [where.get((entry.name, seed)) for entry in cfg.targets]
    missing = [str(d) if d is not None else f"{entry.name} seed {seed}" for d, entry in zip(dirs, cfg.targets)
               if d is None or not d.is_dir()]
    if missing:
        return blocks + [("p", f"Image grids skipped: {len(missing)} attack directories of seed {seed} are not on "
                               f"this machine (first: {missing[0]}); put the run directory of the shard that ran "
                               "that seed beside its results.json and merge again to get them.")]
    real = scenario.tensors("private_train")
    for entry, attack_dir in zip(cfg.targets, dirs):
        fname = f"grid_{entry.name}_seed{seed}.png"
        image_grid(attack_dir, real, scenario.class_names, cfg.report.images_per_class,
                   f"{entry.name} (alpha {entry.alpha:+g})", out / fname)
        blocks.append(("img", fname, f"{entry.name}, alpha {entry.alpha:+g}: attack results (left), real (right)"))
    return blocks + strongest_grids(out, results, cfg, scenario, seed, real)


def strongest_grids(out: Path, results: dict, cfg, scenario, seed: int, real) -> list[tuple]:
    """With an attack suite: each negative-LS entry's seed grid under the attack that leaks most from it on
    average (its strongest), beside the first attack's grid above."""
    adaptive = results.get("adaptive")
    if not adaptive:
        return []
    blocks = []
    for entry in (t for t in cfg.targets if t.alpha < 0 and not t.family):
        means = {j["attack"]: j.get("attack_acc1") for j in adaptive["judges"]
                 if j["name"] == entry.name and j["attack"] in adaptive["attacks"] and j.get("attack_acc1") is not None}
        if not means:
            continue
        strongest = max(means, key=means.get)
        run = next((r for r in results["runs"] if (r["name"], r["seed"], r.get("attack_name")) ==
                    (entry.name, seed, strongest)), None)
        attack_dir = None if run is None else Path(os.path.normpath(out / run["attack"]))
        if attack_dir is None or not attack_dir.is_dir():
            continue
        fname = f"grid_{entry.name}_seed{seed}_{strongest}.png"
        image_grid(attack_dir, real, scenario.class_names, cfg.report.images_per_class,
                   f"{entry.name} (alpha {entry.alpha:+g}), attack {strongest}", out / fname)
        blocks.append(("img", fname, f"{entry.name}, alpha {entry.alpha:+g}, under {strongest} (its strongest attack on "
                                     "average): attack results (left), real (right)"))
    return blocks


def wall_time_blocks(results: dict) -> list[tuple]:
    """The stages' seconds of this run, or, for a merge of seed shards, one line per shard."""
    timings, threads = results["timings"], results["settings"]["num_threads"]
    blocks: list[tuple] = [("h2", "Wall time")]
    if "shards" in timings:
        body = []
        for shard in timings["shards"]:
            path_s, _ = critical_path(shard["stages"])
            core_s = core_seconds(shard["stages"], shard["num_threads"])
            body.append([shard["file"], str(shard["seeds"]), f"{shard['stages_wall_s']:.1f}", str(shard["num_threads"]),
                         f"{core_s:.1f}", f"{path_s:.1f}"])
        blocks.append(("table", ["shard", "seeds", "stages s", "threads", "core-seconds", "critical path s"], body))
        blocks.append(("p", "Merged from seed shards, each run on its own (stages it reused count their reuse, "
                            "not their original time); per-stage seconds: results.json timings.shards."))
        return blocks
    blocks.append(("table", ["stage", "seconds this run", "how"], _stage_rows(timings)))
    blocks.append(("p", f"Total for the stages: {timings['stages_wall_s']:.1f} s with {threads} torch thread(s) per "
                        f"stage; {parallel_sentence(timings['stages'], threads)}"))
    return blocks


def primary_rows(results: dict) -> list[dict]:
    """The rows the report's main tables read: the worst case's with an attack suite (adaptive.py)."""
    adaptive = results.get("adaptive")
    return adaptive["worst_case_rows"] if adaptive else results["rows"]


def build_blocks(out: Path, results: dict, cfg, scenario) -> list[tuple]:
    rows = primary_rows(results)
    summary = summarise(rows)
    seeds = cfg.seeds
    blocks: list[tuple] = [("h1", "Label smoothing and model inversion: experiment report")]
    blocks.append(("p", f"{scenario_sentence(cfg, scenario)}, "
                        f"{scenario.image_size} px, {scenario.channels} channel(s). Seeds: {seeds}. "
                        "One generator prior (public data only) and one evaluation model (a different architecture, "
                        "hard labels) are shared by all seeds, as in the paper; each seed retrains every target "
                        "and re-seeds the attack. All targets use the same recipe and the same attack settings "
                        "and seeds; only the entry's alpha (and its own overrides) differ."))
    blocks.append(("h2", "Results"))
    blocks.append(("p", verdict_sentence(results["claims"])))
    header, body = results_table(summary)
    blocks.append(("table", header, body))
    blocks.append(("p", f"Mean ± std over seeds (std only with several seeds); percentages for accuracies, ECE, "
                        f"PRDC and KES. Evaluation model test accuracy: "
                        f"{100 * (results['eval_model']['test_acc'] or float('nan')):.1f} %. "
                        f"{prior_sentence(results['prior'])} "
                        f"{instruments_sentence(results['timings'].get('stages', {}))}"
                        f"FID/KID/PRDC feature space: {results['settings']['feature_extractor']}. "
                        "KID (unbiased MMD^2, cubic kernel) beside FID: FID on a few hundred attack images is biased "
                        "upward at that size, KID is not; each row of results.json also holds KID's 95 % bootstrap "
                        "interval (kid_ci_low, kid_ci_high). "
                        "Attack Acc@5 is n/a when the target has 5 classes or fewer. Acc@1/Acc@5 initial: every candidate "
                        "PPA's initial selection kept, before optimisation (so it does not depend on the final "
                        "selection; attacks of results version 1 scored the final samples' latents instead). "
                        "Right category (identity scenarios): the evaluation model's top-1 identity belongs to the "
                        "attacked identity's category. Train acc: the target's accuracy on its own training images. "
                        "Precision/recall/density/coverage: per attacked class against that class's private "
                        "images, averaged over classes (k = 3)."))
    for key, label, fname in (("attack_acc1", "attack Acc@1 (%)", "plot_attack_acc1.png"),
                              ("test_acc", "target test accuracy (%)", "plot_test_acc.png")):
        plot_against_alpha(rows, key, label, out / fname)
        blocks.append(("img", fname, f"{label} against alpha"))
    blocks += claims_blocks(out, rows, results["claims"], PERCENT)
    blocks += trend_blocks(out, rows, results.get("trend") or [])  # only with 3 alphas >= 0 in one recipe
    blocks += controls_blocks(results.get("controls") or [])  # only with a control family and a negative-LS entry
    if results.get("ablation"):
        blocks += ablation_blocks(results["ablation"], PERCENT)
    blocks += tradeoff_blocks(out, summary, cfg.targets)  # only when several defense families are present
    blocks += primary_blocks(results, out, rows, cfg.targets)  # only with report.primary_cost
    blocks += matched_blocks(results)  # only with two defense families or more
    blocks += adaptive_blocks(results)  # only with an attack suite
    if len(seeds) > 1:
        blocks.append(("h2", "Per seed"))
        blocks.append(("table", ["target", "alpha", "seed"] + [t for _, t in METRICS],
                       [[r["name"], f"{r['alpha']:+g}", str(r["seed"])] + [_cell(r, k) for k, _ in METRICS] for r in rows]))
        blocks.append(("p", "Attack Acc@1 of one target and seed with its 95 % bootstrap interval over the attacked "
                            "classes (metrics/judges.py; a class's attack images are often all right or all wrong, so "
                            "the classes, not the images, are the sample), where the evaluation recorded it."))
    blocks += grid_blocks(out, results, cfg, scenario)
    blocks.append(("h2", "Settings and why"))
    if cfg.rationale:
        blocks.append(("pre", cfg.rationale.strip()))
    blocks.append(("table", ["stage", "budget (identical for every alpha)"], budget_rows(results["settings"]["stages"])))
    blocks.append(("p", "Full resolved stage configs: results.json settings.stages."))
    blocks += wall_time_blocks(results)
    if results["notes"]:
        blocks.append(("h2", "Notes"))
        blocks += [("p", n) for n in results["notes"]]
    return blocks


def render_markdown(blocks: list[tuple]) -> str:
    lines = []
    for kind, *rest in blocks:
        if kind == "h1":
            lines += [f"# {rest[0]}", ""]
        elif kind == "h2":
            lines += [f"## {rest[0]}", ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "pre":
            lines += ["```", rest[0], "```", ""]
        elif kind == "img":
            lines += [f"![{rest[1]}]({rest[0]})", ""]
        elif kind == "table":
            header, body = rest
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(row) + " |" for row in body]
            lines.append("")
    return "\n".join(lines)


def render_html(blocks: list[tuple], title: str = "lsmia experiment report") -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse;"
             "font-size:0.85em}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>"]
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "pre":
            parts.append(f"<pre>{e(rest[0])}</pre>")
        elif kind == "img":
            parts.append(f"<figure><img src='{e(rest[0])}' alt='{e(rest[1])}'><figcaption>{e(rest[1])}</figcaption></figure>")
        elif kind == "table":
            header, body = rest
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out: Path, results: dict, cfg, scenario) -> None:
    blocks = build_blocks(Path(out), results, cfg, scenario)
    write_text(Path(out) / "report.md", render_markdown(blocks))
    write_text(Path(out) / "report.html", render_html(blocks))
