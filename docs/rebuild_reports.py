"""Rebuild committed studies' statistics and reports from their committed rows, running no stage:

    python docs/rebuild_reports.py docs/c1 docs/defenses

For each DIR: reads DIR/results.json, validates its settings.experiment as the study's ExperimentConfig,
recomputes pipeline.study_statistics(rows, cfg) (what a run and a merge of seed shards compute), writes
those keys back into results.json (every other key, rows included, is left as it was) and rewrites
report.md, report.html and the plots with this version's report code. Used when the statistics or the
report change after a study ran (issue 30: power at the Holm level, the dose contrast).

Needs the study's data on this machine (the report's scenario sentence reads it). The attack directories
are not committed, so the image grids are the grid_*.png files already in DIR: the report shows them when
every entry's grid of the first seed is there, and the merge's "skipped" line otherwise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lsmia_ext.data import load_scenario
from lsmia_ext.errors import UserInputError
from lsmia_ext.experiment.config import ExperimentConfig
from lsmia_ext.experiment.pipeline import study_statistics
from lsmia_ext.experiment.report import build_blocks, render_html, render_markdown
from lsmia_ext.runio import read_json, write_json, write_text

GRID_HEADING = "Attack results beside real private images"


def committed_grids(blocks: list[tuple], out: Path, cfg: ExperimentConfig) -> list[tuple]:
    """The report blocks with the grids' "skipped" line replaced by the grid images already in OUT."""
    seed = cfg.seeds[0]
    files = [(entry, f"grid_{entry.name}_seed{seed}.png") for entry in cfg.targets]
    at = next((i for i, b in enumerate(blocks) if b[0] == "h2" and b[1].startswith(GRID_HEADING)), None)
    if at is None or not all((out / f).is_file() for _, f in files):
        return blocks
    images = [("img", f, f"{entry.name}, alpha {entry.alpha:+g}: attack results (left), real (right)")
              for entry, f in files]
    return blocks[:at + 1] + images + blocks[at + 2:]


def rebuild(out: Path) -> dict:
    """Recomputes OUT/results.json's statistics and rewrites its report; returns the new results."""
    path = out / "results.json"
    if not path.is_file():
        raise UserInputError(f"{path} does not exist: give the directory of a committed study")
    results = read_json(path)
    cfg = ExperimentConfig.model_validate(results["settings"]["experiment"])
    results.update(study_statistics(results["rows"], cfg))
    blocks = committed_grids(build_blocks(out, results, cfg, load_scenario(cfg.data)), out, cfg)
    write_text(out / "report.md", render_markdown(blocks))
    write_text(out / "report.html", render_html(blocks))
    write_json(path, results)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="study directories holding results.json")
    for out in parser.parse_args(argv).dirs:
        rebuild(out)
        print(f"rebuilt {out}/results.json statistics, report.md, report.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
