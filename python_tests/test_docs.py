"""The documentation tells the truth about the committed results (issue 30).

1. Every relative link (and image) in README.md, bench/README.md and docs/**/README.md points at a file that
   exists, and a link with #anchor at a heading of that file (GitHub's anchor rule).
2. README.md stays short (a newcomer reads it in ten minutes).
3. Every number the README and the study pages quote from a committed results.json is recomputed from it
   here: QUOTES holds (page, how to build the quoted text from the results); the text must appear verbatim.
   Numbers that cannot be recomputed (timings, runs whose results are not committed) say so on their page.
4. The statistics committed beside the rows are the ones this version's code computes from those rows
   (docs/rebuild_reports.py rebuilt them; a change to the statistics must rebuild them too).
"""
from __future__ import annotations

import json
import math
import re
import statistics
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").rglob("README.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
README_MAX_LINES = 250


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings inside code blocks
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_anchor_rule():
    assert anchor("Running a study in parallel: one machine, a multi-GPU node, a cluster") == \
        "running-a-study-in-parallel-one-machine-a-multi-gpu-node-a-cluster"
    assert anchor("`lsmia audit` on a fresh clone") == "lsmia-audit-on-a-fresh-clone"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    bad = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and (dest.suffix != ".md" or frag not in anchors(dest)):
            bad.append(f"{target}: no heading with anchor #{frag} in {dest.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_every_study_has_its_page_and_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < README_MAX_LINES
    for study in ("study", "c1", "defenses", "defenses2025", "adaptive", "toy", "usage", "fresh-runs"):
        assert (ROOT / "docs" / study / "README.md").is_file()
    text = (ROOT / "README.md").read_text()
    assert "make experiment" in text and "make test " in text  # .ci/run runs the README's test command
    # the adaptive study's row and page say it is read on all 7 seeds
    assert "| adaptive attacks, 7 seeds (`experiment-fmnist-adaptive`) |" in text
    assert results(ADAPTIVE)["settings"]["experiment"]["seeds"] == list(range(7))


# ---- numbers -------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def results(study: str) -> dict:
    return json.loads((ROOT / "docs" / study / "results.json").read_text())


def pts(x: float, sign: bool = True) -> str:
    """A fraction as points, one decimal, signed like the pages."""
    return f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"


def ci(c, sign: bool = True) -> str:
    return f"[{pts(c[0], sign)}, {pts(c[1], sign)}]"


def neg_ci(stat: dict) -> str:
    """'29.6 [25.6, 33.5]' for a difference of -29.6 [-33.5, -25.6]: the same interval, negated."""
    return f"{pts(-stat['mean'], False)} [{pts(-stat['ci'][1], False)}, {pts(-stat['ci'][0], False)}]"


def claim(study: str, name: str) -> dict:
    return next(c for c in results(study)["claims"] if c["claim"] == name)


def verdict_stat(c: dict) -> dict:
    return c["metrics"][c.get("metric", "attack_acc1")]


def mean_ci(stat: dict) -> str:
    return f"{pts(stat['mean'])} {ci(stat['ci'])}"


def values(study: str, name: str, key: str) -> list[float]:
    return [r[key] for r in results(study)["rows"] if r["name"] == name]


def avg(study: str, name: str, key: str) -> float:
    return statistics.fmean(values(study, name, key))


def avg_sd(study: str, name: str, key: str) -> str:
    v = values(study, name, key)
    return f"{100 * statistics.fmean(v):.1f} ± {100 * statistics.stdev(v):.1f}"


def control(study: str, entry: str, family: str) -> dict:
    return next(e for e in results(study)["controls"] if e["entry"] == entry and e["family"] == family)


def matched(a: str, b: str, drop: float) -> dict:
    return next(e for e in results("defenses")["matched"] if (e["a"], e["b"], e["drop"]) == (a, b, drop))


def trend(label: str) -> dict:
    return next(t for t in results("c1")["trend"] if t["label"] == label)


def span(xs, digits: int = 1) -> str:
    return f"{100 * min(xs):.{digits}f}-{100 * max(xs):.{digits}f}"


def hard_gaps() -> list[float]:
    rows = [r for r in results("c1")["rows"] if r["name"] == "hard"]
    return [r["attack_acc_category"] - r["attack_acc1"] for r in sorted(rows, key=lambda r: r["seed"])]


# ---- the quotes, page by page ------------------------------------------------------------------------

def _readme() -> list[str]:
    c14, neg_mid = claim("c1", "C1.4"), [e for e in results("defenses")["matched"]
                                         if e["a"] == "negative LS" and e["drop"] <= 0.01 and e["n"] >= 4]
    c1_100 = [claim("c1", f"C1.{i}") for i in (1, 2, 3)]
    slope = [trend(k) for k in ("experiment recipe", "data.train_per_class=25")]
    return [
        f"from {pts(avg('study', 'hard', 'attack_acc1'), False)} % to {pts(avg('study', 'ls_neg', 'attack_acc1'), False)} %",
        f"(paired: {mean_ci(verdict_stat(claim('study', 'C2a')))} points, 7 seeds)",
        f"it is {neg_ci(control('study', 'ls_neg', 'train less'))}",
        f"points more private than a hard-label model trained less and {neg_ci(control('study', 'ls_neg', 'narrower model'))} points",
        f"Its price here is {pts(verdict_stat(claim('study', 'C2b'))['mean'], False)} points of test accuracy",
        f"still cut {pts(-verdict_stat(claim('defenses', 'C2.1a'))['mean'], False)}-"
        f"{pts(-verdict_stat(claim('defenses', 'C2.4a'))['mean'], False)} points",
        f"{mean_ci(verdict_stat(claim('study', 'C1')))} points at +0.1",
        f"({mean_ci(verdict_stat(c14))} points)", f"removes (p {c14['p_holm']:.3f})",
        f"negative LS -0.05: {mean_ci(verdict_stat(claim('study', 'C2a')))} **reproduced**, at a cost of "
        f"{pts(verdict_stat(claim('study', 'C2b'))['mean'], False)} {ci(verdict_stat(claim('study', 'C2b'))['ci'], False)}",
        f"positive LS +0.1: {mean_ci(verdict_stat(claim('study', 'C1')))} inconclusive (could detect "
        f"{pts(claim('study', 'C1')['detectable_effect'], False)})",
        f"vs train less {mean_ci(control('study', 'ls_neg', 'train less'))}, vs narrower "
        f"{mean_ci(control('study', 'ls_neg', 'narrower model'))}",
        f"25 images, +0.05: {mean_ci(verdict_stat(c14))} **reproduced** unadjusted, Holm p {c14['p_holm']:.3f}",
        f"(100 images could detect {span([c['detectable_effect_holm'] for c in c1_100])} at Holm's level)",
        f"slopes {pts(0.1 * slope[0]['mean'])} {ci([0.1 * x for x in slope[0]['ci']])}, "
        f"{pts(0.1 * slope[1]['mean'])} {ci([0.1 * x for x in slope[1]['ci']])} per +0.1 alpha",
        f"dose contrast (post hoc) {mean_ci(slope[0]['contrast'])}, {mean_ci(slope[1]['contrast'])}",
        f"negative LS: {mean_ci(verdict_stat(claim('c1', 'C2.1a')))} at 100 images, "
        f"{mean_ci(verdict_stat(claim('c1', 'C2.2a')))} at 25",
        f"(Holm over {neg_mid[0]['holm_tests']}; negative-LS comparisons could detect "
        f"{span([e['detectable_effect_holm'] for e in neg_mid], 0)} points at that level)",
        f"negative LS -0.05 vs train less {mean_ci(control('defenses', 'ls_neg_0.05', 'train less'))}",
        f"negative LS {mean_ci(verdict_stat(claim('ablation-classsplit', 'C2')))} reproduced; positive LS "
        f"{mean_ci(verdict_stat(claim('ablation-classsplit', 'C1')))} inconclusive",
        f"negative LS {mean_ci(verdict_stat(claim('study-split1', 'C2')))} reproduced; positive LS "
        f"{mean_ci(verdict_stat(claim('study-split1', 'C1')))} inconclusive",
        f"the evaluation model ({pts(results('c1')['eval_model']['val_acc'], False)} % validation accuracy)",
        f"targets it judges ({pts(avg('c1', 'hard', 'val_acc'), False)} %)",
    ]


def _c1_row(c: dict) -> str:
    """A C1 verdict row of docs/c1/README.md from the claim."""
    stat = verdict_stat(c)
    if c["verdict"] == "reproduced":
        left = "**reproduced**"
        right = f"p {c['p_holm']:.3f}, **inconclusive** ({pts(c['detectable_effect_holm'], False)})"
    else:
        left = f"{c['verdict']} ({pts(c['detectable_effect'], False)})"
        right = f"p {c['p_holm']:.3f}, {c['verdict_holm']} ({pts(c['detectable_effect_holm'], False)})"
    return f"| {pts(stat['mean'])} | {ci(stat['ci'])} | {left} | {right} |"


def _c1_page() -> list[str]:
    claims = [claim("c1", f"C1.{i}") for i in range(1, 7)]
    t100, t25 = trend("experiment recipe"), trend("data.train_per_class=25")
    gaps, ev = hard_gaps(), results("c1")["eval_model"]
    pilot = json.loads((ROOT / "docs" / "c1" / "pilot.json").read_text())
    cat = [c["metrics"]["attack_acc_category"] for c in claims[:2]]
    delta = [c["metrics"]["delta_eval"] for c in claims[:3]]
    assert all(d["ci"][0] > 0 for d in delta)  # "each interval above 0"

    def slope_row(t):
        s = 0.1
        return (f"| {pts(s * t['mean'])} | {ci([s * x for x in t['ci']])} | inconclusive "
                f"({pts(s * t['detectable_effect'], False)}) |")

    def contrast_row(t):
        c = t["contrast"]
        return (f"| {pts(c['mean'])} | {ci(c['ci'])} | inconclusive ({pts(c['detectable_effect'], False)}) | "
                f"p {c['p_holm']:.3f}")

    return [
        *(_c1_row(c) for c in claims), slope_row(t100), slope_row(t25), contrast_row(t100), contrast_row(t25),
        f"| hard labels (100) | {pts(avg('c1', 'hard', 'val_acc'), False)} | {pts(avg('c1', 'hard', 'test_acc'), False)} | "
        f"{pts(avg('c1', 'hard', 'ece'), False)} | {avg_sd('c1', 'hard', 'attack_acc1')} |",
        f"| alpha -0.05 (100) | {pts(avg('c1', 'ls_neg0.05', 'val_acc'), False)} |",
        f"weights -4.0, -1.7, +0.6, +5.1" if [round(w, 1) for w in t100["slope_weights"]] == [-4.0, -1.7, 0.6, 5.1]
        else "slope weights changed",
        f"**+1.9 [+0.5, +3.4]** points" if mean_ci(verdict_stat(claims[3])) == "+1.9 [+0.5, +3.4]" else "C1.4 changed",
        f"C1.5's interval at +0.1 reaches {pts(verdict_stat(claims[4])['ci'][1])}",
        f"after Holm\n  (0.05/6), {span([c['detectable_effect_holm'] for c in claims[:3]])} points at 100 images and "
        f"{span([c['detectable_effect_holm'] for c in claims[3:]])} at 25 (80 % power; unadjusted, "
        f"{span([c['detectable_effect'] for c in claims[:3]])} and {span([c['detectable_effect'] for c in claims[3:]])})",
        f"right category {mean_ci(cat[0])} and {mean_ci(cat[1])} points",
        f"delta_eval {min(d['mean'] for d in delta):+.1f} to {max(d['mean'] for d in delta):+.1f}, each interval above 0",
        f"reaches {pts(ev['val_acc'], False)} % validation / {pts(ev['test_acc'], False)} % test accuracy, against "
        f"{pts(avg('c1', 'hard', 'val_acc'), False)} / {pts(avg('c1', 'hard', 'test_acc'), False)} %",
        f"k = 6\n  gave {pts(pilot['pilots']['6']['gap'], False)}",
        f"{pts(min(gaps), False)} to {pts(max(gaps), False)} points,\n  mean {pts(statistics.fmean(gaps), False)}: seed 0 was the largest",
    ]


def _defense_row(a: str, b: str, drop: float) -> str:
    e = matched(a, b, drop)
    return (f"| {100 * drop:g} | {a} - {b} | {e['n']} | {pts(e['mean'])} | {ci(e['ci'])} | {e['p_holm']:.3f} | "
            f"no difference shown (±{pts(e['detectable_effect_holm'], False)}; ±{pts(e['detectable_effect'], False)})")


def _defenses_page() -> list[str]:
    from lsmia_ext.experiment.stats import holm

    read = [e for e in results("defenses")["controls"] if e["p"] is not None]
    p_holm = dict(zip([(e["entry"], e["family"]) for e in read], holm([e["p"] for e in read])))
    rows = [("ls_neg_0.05", "train less", "alpha -0.05 (82.0 % val) | train less"),
            ("ls_neg_0.05", "narrower model", "alpha -0.05 | narrower model"),
            ("ls_neg_0.04", "narrower model", "alpha -0.04 (83.9 % val) | narrower model")]
    neg, mid, bido, mids = "negative LS", "MID", "BiDO", "MID (sampled)"
    return [
        *(_defense_row(a, b, d) for a, b, d in [(neg, mid, 0.005), (neg, bido, 0.005), (neg, mids, 0.005),
                                                 (mid, bido, 0.005), (neg, mid, 0.01), (neg, bido, 0.01),
                                                 (neg, mids, 0.01), (mid, mids, 0.01), (neg, mids, 0.02)]),
        *(f"| {label} | {e['n']} of {e['n'] + len(e['unread'])} | {pts(e['mean'])} | {ci(e['ci'])} | "
          f"{p_holm[(entry, fam)]:.3f} | negative LS more private |"
          for entry, fam, label in rows for e in [control("defenses", entry, fam)]),
        f"alpha -0.01: {mean_ci(verdict_stat(claim('defenses', 'C2.1a')))}, Holm p {claim('defenses', 'C2.1a')['p_holm']:.3f}",
        f"-0.03: {mean_ci(verdict_stat(claim('defenses', 'C2.4a')))}",
        f"| none | - | {avg_sd('defenses', 'undefended', 'val_acc')} | {avg_sd('defenses', 'undefended', 'test_acc')} | "
        f"{avg_sd('defenses', 'undefended', 'attack_acc1')} |",
    ]


def _study_page() -> list[str]:
    s = results("study")
    tl, nm = control("study", "ls_neg", "train less"), control("study", "ls_neg", "narrower model")
    (p_tl, p_nm) = (tl["p"], nm["p"])
    kes3 = [avg("study", n, "kes_test") for n in ("narrow_w3_15ep", "narrow_w3_20ep", "narrow_w3")]
    test_images = s["splits"]["private_test"]
    return [
        f"~{test_images / 20:.0f} test images each: {test_images // 1000} {test_images % 1000:03d} test images over 20",
        f"| {pts(verdict_stat(claim('study', 'C1'))['mean'])} | {ci(verdict_stat(claim('study', 'C1'))['ci'])} | "
        f"inconclusive (could detect {pts(claim('study', 'C1')['detectable_effect'], False)}) |",
        f"| {pts(verdict_stat(claim('study', 'C2a'))['mean'])} | {ci(verdict_stat(claim('study', 'C2a'))['ci'])} | **reproduced** |",
        f"| {pts(verdict_stat(claim('study', 'C2b'))['mean'])} | {ci(verdict_stat(claim('study', 'C2b'))['ci'])} | **reversed**",
        f"| {pts(tl['mean'])} | {ci(tl['ci'])} | **negative LS more private** |",
        f"| {pts(nm['mean'])} | {ci(nm['ci'])} | **negative LS more private** |",
        f"(p = {p_tl:.6f} and {p_nm:.3f}, adjusted {2 * p_tl:.5f} and {max(p_nm, 2 * p_tl):.3f})",
        f"| {100 * min(kes3):.1f}-{100 * max(kes3):.1f} |",
        f"| hard labels | {pts(avg('study', 'hard', 'val_acc'), False)} | {avg_sd('study', 'hard', 'test_acc')} | "
        f"{avg_sd('study', 'hard', 'attack_acc1')} |",
        f"**{avg_sd('study', 'ls_neg', 'attack_acc1')}**",
        f"by {pts(-verdict_stat(claim('study', 'C2a'))['mean'], False)} points in the\n7-seed study above",
        f"(-1.4 [-4.6, +1.8] in the 7-seed study)" if mean_ci(verdict_stat(claim("study", "C1"))) == "-1.4 [-4.6, +1.8]"
        else "study C1 changed",
        f"| {mean_ci(verdict_stat(claim('ablation-classsplit', 'C1'))).replace(' [', ' | [')} | inconclusive |",
        f"| {mean_ci(verdict_stat(claim('ablation-classsplit', 'C2'))).replace(' [', ' | [')} | reproduced |",
        f"C1 {pts(verdict_stat(claim('study-split1', 'C1'))['mean'])}\npoints {ci(verdict_stat(claim('study-split1', 'C1'))['ci'])}",
    ]


def _toy_page() -> list[str]:
    toy = json.loads((ROOT / "docs" / "toy" / "toy.json").read_text())["results"]
    return [f"| {r['alpha']:+g} | {r['steps']} | {r['distance_to_class']:.2f} |".replace("| +0 |", "| 0 |")
            for r in toy]


ADAPTIVE = "adaptive"  # the adaptive study (issue 28), merged from its committed seed shards


def acc(name: str, attack: str, key: str = "attack_acc1") -> float:
    """Mean over the merged seeds of one target's value under one attack."""
    return statistics.fmean(r[key] for r in results(ADAPTIVE)["rows"] if (r["name"], r["attack"]) == (name, attack))


def acc_seed(name: str, attack: str, seed: int, key: str = "attack_acc1") -> float:
    return next(r[key] for r in results(ADAPTIVE)["rows"] if (r["name"], r["attack"], r["seed"]) == (name, attack, seed))


def _worst_family() -> dict:
    """The worst-case Holm family of the adaptive study, by comparison: C2a, train less, narrower model."""
    fam = results(ADAPTIVE)["adaptive"]["worst_case_family"]
    pick = lambda word: next(c for c in fam if word in c["comparison"])  # noqa: E731
    return {"C2a": pick("C2a"), "train less": pick("train less"), "narrower model": pick("narrower")}


def _worst_mean(name: str) -> float:
    rows = [w["attack_acc1"] for w in results(ADAPTIVE)["adaptive"]["worst_case_rows"] if w["name"] == name]
    return statistics.fmean(rows)


def _adaptive_quotes() -> list[str]:
    """The adaptive study's numbers the README quotes (its worst-case Holm family and the rule's verdict)."""
    d, w = results(ADAPTIVE)["adaptive"]["decision"], _worst_family()
    assert d["headline"] == "narrows to A0"  # the README says the headline narrows; recheck it if this flips
    return [f"negative LS leaks {pts(_worst_mean('ls_neg'), False)} % against hard labels' "
            f"{pts(_worst_mean('hard'), False)} %",
            f"{mean_ci(w['C2a'])} points (Holm p {w['C2a']['p_holm']:.3f})",
            f"{neg_ci(w['train less'])} points less than an equally accurate model trained less "
            f"(Holm p {w['train less']['p_holm']:.3f})",
            f"({mean_ci(w['narrower model'])}; the {w['narrower model']['n']} seeds read could detect "
            f"{pts(w['narrower model']['detectable_effect_holm'], False)} points at Holm's level)",
            "the headline narrows",
            f"worst case over the suite (primary): negative LS -0.05 {mean_ci(w['C2a'])} **reproduced** (Holm p "
            f"{w['C2a']['p_holm']:.3f}; PPA alone: {pts(d['drop_first'])})",
            f"vs train less {mean_ci(w['train less'])} **more private** (Holm p {w['train less']['p_holm']:.3f}); "
            f"vs narrower {mean_ci(w['narrower model'])} no difference shown (could detect "
            f"{pts(w['narrower model']['detectable_effect_holm'], False)} at Holm's level)",
            f"adaptive attacks, {len(results(ADAPTIVE)['settings']['experiment']['seeds'])} seeds"]


def _adaptive_page() -> list[str]:
    r = results(ADAPTIVE)
    a, d = r["adaptive"], r["adaptive"]["decision"]
    seeds = r["settings"]["experiment"]["seeds"]
    cell = lambda n, k: f"{pts(acc(n, k), False)} ({' / '.join(pts(acc_seed(n, k, s), False) for s in seeds)})"  # noqa: E731
    worst = {(w["name"], w["seed"]): w["attack_acc1"] for w in a["worst_case_rows"]}
    wcell = lambda n: f"{pts(statistics.fmean(worst[(n, s)] for s in seeds), False)} (" + \
        " / ".join(pts(worst[(n, s)], False) for s in seeds) + ")"  # noqa: E731
    table = [f"| {n} | " + " | ".join(cell(n, k) for k in a["attacks"]) + f" | {wcell(n)} |" for n in ("hard", "ls_neg")]
    st = lambda s: f"{pts(s['mean'])} (" + " / ".join(pts(x) for x in s["diffs"]) + ")"  # noqa: E731
    drop = {k: next(c for c in a["by_attack"][k]["claims"] if c.get("part") == "attack drop") for k in a["attacks"]}
    ctl = {k: {c["family"]: c for c in a["by_attack"][k]["controls"]} for k in a["attacks"]}
    table += [f"| {k} | {st(drop[k]['metrics']['attack_acc1'])} | {st(ctl[k]['train less'])} | "
              f"{st(ctl[k]['narrower model'])} |" for k in a["attacks"]]
    wdrop = next(c for c in r["claims"] if c.get("part") == "attack drop")["metrics"]["attack_acc1"]
    wctl = {c["family"]: c for c in r["controls"]}
    table.append(f"| worst case | {st(wdrop)} | {st(wctl['train less'])} | {st(wctl['narrower model'])} |")
    ci = f"A0 [{pts(acc_seed('ls_neg', 'A0', 0, 'attack_acc1_ci_low'), False)}, " \
         f"{pts(acc_seed('ls_neg', 'A0', 0, 'attack_acc1_ci_high'), False)}]"
    w, judges = _worst_family(), {j["judge"]: j for j in a["judge_drops"]}
    return table + [ci, f"a change of {pts(d['shrink'])}", f"hard {pts(acc_seed('hard', 'A0', 0), False)} and",
                    f"C2a: {mean_ci(w['C2a'])} points, Holm p {w['C2a']['p_holm']:.3f}",
                    f"trained less: {mean_ci(w['train less'])}, Holm p {w['train less']['p_holm']:.3f}",
                    f"narrower model: {mean_ci(w['narrower model'])}, Holm p {w['narrower model']['p_holm']:.3f}",
                    f"these seeds could detect {pts(w['narrower model']['detectable_effect_holm'], False)} points "
                    f"({pts(w['narrower model']['detectable_effect'], False)} unadjusted)",
                    f"-{pts(-d['drop_first'], False)} under A0", f"{pts(d['drop_worst'])} points against",
                    f"primary {mean_ci(judges['evaluation model (primary)'])}, second evaluation model "
                    f"{mean_ci(judges['second evaluation model'])}, both agree {mean_ci(judges['both evaluation models agree'])}, "
                    f"nearest private training image {mean_ci(judges['nearest private training image'])}"]


D25 = "defenses2025"


def d25_primary() -> dict:
    return {e["family"]: e for e in results(D25)["primary"]}


def d25_holm(e: dict) -> str:
    return "< 0.0001" if e["p_holm"] < 1e-4 else f"{e['p_holm']:.3f}"


def d25_attack(name: str, attack: str) -> float:
    """Mean attack Acc@1 of one target over seeds under one attack ('worst case' included)."""
    rows = results(D25)["adaptive"]["worst_case_rows"] if attack == "worst case" else \
        [r for r in results(D25)["rows"] if r["attack"] == attack]
    return statistics.fmean(r["attack_acc1"] for r in rows if r["name"] == name)


def d25_undecided() -> list[dict]:
    return [e for e in d25_primary().values() if e["verdict"] == "no difference shown"]


def _d25_readme() -> list[str]:
    p, c = d25_primary(), verdict_stat(claim(D25, "C2.2a"))
    trap = p["Trap-MID"]
    return [f"Trap-MID leaves the attacker {neg_ci(trap)} points less than negative LS",
            f"({pts(statistics.fmean(trap['values']), False)} % against "
            f"{pts(statistics.fmean(trap['reference_values']), False)} %, Holm p {d25_holm(trap)})",
            f"(the seeds could detect {span([e['detectable_effect_holm'] for e in d25_undecided()], 0)} points)",
            f"still leave the strongest attack {span([statistics.fmean(e['values']) for e in d25_undecided()] + [statistics.fmean(trap['reference_values'])])} "
            f"% (the undefended model: {pts(d25_attack('undefended', 'worst case'), False)} %)",
            f"| Trap-MID - negative LS {mean_ci(trap)} **Trap-MID more private** (Holm p {d25_holm(trap)}, "
            f"{trap['n']} seeds); MID {mean_ci(p['MID'])}, BiDO {mean_ci(p['BiDO'])}, TL-DMI {mean_ci(p['TL-DMI'])} "
            f"({p['TL-DMI']['n']} seeds), random erasing {mean_ci(p['random erasing'])}: no difference shown (could "
            f"detect {span([e['detectable_effect_holm'] for e in d25_undecided()])}); negative LS -0.02 vs undefended "
            f"{mean_ci(c)} under the worst case;"]


def d25_s3() -> tuple[dict, dict]:
    """The surrogate-only probe (bench/surrogate_only_probe.py): ({target: mean S3 attack Acc@1 over seeds},
    its primary-rule comparison)."""
    d = json.loads((ROOT / "docs" / D25 / "surrogate_only.json").read_text())
    names = {r["name"] for r in d["s3"]}
    return {n: statistics.fmean(r["acc1"] for r in d["s3"] if r["name"] == n) for n in names}, d["primary"][0]


def _d25_s3_quotes() -> list[str]:
    """The README's sentences on the probe."""
    m, e = d25_s3()
    trap = span([v for n, v in m.items() if n.startswith("trap_")])
    return [f"recovers {trap} % from Trap-MID's models, as much as from the undefended one ({pts(m['undefended'], False)} %)",
            f"Trap-MID's lead is {neg_ci(e)} points",
            f"takes Trap-MID to {trap} % (undefended {pts(m['undefended'], False)} %), and Trap-MID - negative LS under "
            f"A0, A3, S3 is {mean_ci(e)} |"]


def _d25_s3_page() -> list[str]:
    m, e = d25_s3()
    a3 = lambda n: pts(d25_attack(n, "A3"), False)  # noqa: E731
    cells = lambda ns: ", ".join(pts(m[n], False) for n in ns) + " | " + ", ".join(a3(n) for n in ns)  # noqa: E731
    neg = ["ls_neg_0.015", "ls_neg_0.02", "ls_neg_0.025"]
    return [f"| undefended | {cells(['undefended'])} |", f"| negative LS -0.015, -0.02, -0.025 | {cells(neg)} |",
            f"| Trap-MID beta 0.2, 0.3, 0.4 | {cells(['trap_0.2', 'trap_0.3', 'trap_0.4'])} |",
            f"| Trap-MID beta 0.6, 0.65, 0.7, 0.8 | {cells(['trap_0.6', 'trap_0.65', 'trap_0.7', 'trap_0.8'])} |",
            f"Trap-MID's targets leak {span([v for n, v in m.items() if n.startswith('trap_')])} %, the undefended "
            f"target {pts(m['undefended'], False)} % and negative LS {span([m[n] for n in neg])} %",
            f"Trap-MID - negative LS = {mean_ci(e)} points, p {e['p_holm']:.3f}, {e['n']} seeds",
            f"({a3('undefended')} against {pts(m['undefended'], False)} on the undefended target)"]


def _d25_page() -> list[str]:
    p, c = d25_primary(), verdict_stat(claim(D25, "C2.2a"))
    m = {(e["a"], e["b"], e["drop"]): e for e in results(D25)["matched"]}
    rows = []
    for e in p.values():
        diff = f"**{pts(e['mean'])}**" if e["p_holm"] < 0.05 else pts(e["mean"])
        rows.append(f"| {pts(statistics.fmean(e['values']), False)} | {pts(statistics.fmean(e['reference_values']), False)} "
                    f"| {diff} | {ci(e['ci'])} | {d25_holm(e)} |")
    seven = [e for e in d25_undecided() if e["n"] == 7]
    trap = [n for n in {r["name"] for r in results(D25)["rows"]} if n.startswith("trap_")]
    a0, a3 = [d25_attack(n, "A0") for n in trap], [d25_attack(n, "A3") for n in trap]
    return rows + [
        f"The paired spreads came out at {span([e['sd'] for e in p.values()])} points",
        f"could detect {span([e['detectable_effect_holm'] for e in seven])} points at Holm's first step",
        f"TL-DMI, read on {p['TL-DMI']['n']} seeds, {pts(p['TL-DMI']['detectable_effect_holm'], False)}",
        f"its targets leak {100 * min(a0):.0f}-{100 * max(a0):.0f} %", f"recovers to {100 * min(a3):.0f}-{100 * max(a3):.0f} %",
        f"alpha -0.02 - undefended = {pts(c['mean'])} points {ci(c['ci'])}",
        f"(A3: {pts(d25_attack('ls_neg_0.02', 'A3'), False)} vs {pts(d25_attack('undefended', 'A3'), False)})",
        f"(A0: {pts(d25_attack('ls_neg_0.02', 'A0'), False)} vs {pts(d25_attack('undefended', 'A0'), False)})",
        f"MID and BiDO each leak {pts(-m[('MID', 'random erasing', 0.02)]['mean'], False)} points less than random "
        f"erasing (CI {ci(m[('BiDO', 'random erasing', 0.02)]['ci'])})",
        f"training less leaks {pts(m[('random erasing', 'train less', 0.02)]['mean'], False)} less than random erasing"]


QUOTES = {"README.md": lambda: _readme() + _adaptive_quotes() + _d25_readme() + _d25_s3_quotes(),
          "docs/adaptive/README.md": _adaptive_page, "docs/defenses2025/README.md": lambda: _d25_page() + _d25_s3_page(), "docs/c1/README.md": _c1_page, "docs/defenses/README.md": _defenses_page,
          "docs/study/README.md": _study_page, "docs/toy/README.md": _toy_page}


@pytest.mark.parametrize("page", sorted(QUOTES))
def test_quoted_numbers_recompute_from_the_committed_results(page):
    text = " ".join((ROOT / page).read_text().split())  # line breaks of the prose do not matter
    missing = [q for q in QUOTES[page]() if " ".join(q.split()) not in text]
    assert not missing, f"{page} does not say (recomputed from the committed results): {missing}"


def test_the_headline_power_figures_are_the_holm_level_ones():
    # issue 30: the defenses' negative-LS comparisons at Holm's first step could detect about 26-30 points,
    # C1 at 100 images about 5.7-7.0; the unadjusted ones (9-12, 4.1-5.0) no longer stand alone
    neg = [e for e in results("defenses")["matched"] if e["a"] == "negative LS" and e["drop"] <= 0.01 and e["n"] >= 4]
    assert all(0.25 < e["detectable_effect_holm"] < 0.35 and e["holm_tests"] == 21 for e in neg)
    c1 = [claim("c1", f"C1.{i}")["detectable_effect_holm"] for i in (1, 2, 3)]
    assert min(c1) == pytest.approx(0.057, abs=0.001) and max(c1) == pytest.approx(0.070, abs=0.001)


# ---- committed statistics are current -----------------------------------------------------------------

def close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize("study", ["study", "c1", "defenses", ADAPTIVE, D25])
def test_committed_statistics_are_what_the_code_computes_from_the_rows(study):
    from lsmia_ext.experiment.config import ExperimentConfig
    from lsmia_ext.experiment.pipeline import study_statistics

    committed = results(study)
    cfg = ExperimentConfig.model_validate(committed["settings"]["experiment"])
    fresh = json.loads(json.dumps(study_statistics(committed["rows"], cfg)))
    stale = [k for k, v in fresh.items() if not close(v, committed.get(k))]
    assert not stale, f"docs/{study}/results.json: {stale} differ from this code's; run docs/rebuild_reports.py"


def test_the_instrument_timings_quoted_are_the_committed_runs():
    """README and docs/fresh-runs quote the two make-experiment runs of issue 31 (total wall seconds, core-seconds)."""
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "fresh-runs" / "README.md").read_text()
    for kind in ("shipped", "trained"):
        t = results(f"fresh-runs/instruments-2026-12-07/{kind}")["timings"]
        from lsmia_ext.experiment.report import core_seconds

        core = core_seconds(t["stages"], 1)  # what the report's "core-seconds in all" says (1 thread per stage)
        assert f"{t['total_wall_s']:.0f} s" in text and f"{core:,.0f}".replace(",", " ") in text, kind
    rows = [results(f"fresh-runs/instruments-2026-12-07/{k}")["rows"] for k in ("shipped", "trained")]
    study = {(r["name"], r["seed"]): r["attack_acc1"] for r in results("study")["rows"]}
    assert all(a["attack_acc1"] == b["attack_acc1"] == study[(a["name"], 0)] for a, b in zip(*rows))
