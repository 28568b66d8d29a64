"""`lsmia experiment --merge`: a study run in seed shards and merged equals the same study run at once;
shards of another study, a seed in two shards and a missing file are refused; seeds other than 0..N-1.

The digits study with the quick preset (seconds per run): shard A runs seed 0, shard B seed 2 (a seed
outside 0..N-1, per-seed recipe seed + 2), and one run seeds [0, 2]; each in its own directory, so
every stage runs three times in all, on the same machine with the same code and seeds."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import lsmia
from test_bad_input import one_error_line

QUICK = ["experiment", "--config", "experiment-digits", "--preset", "quick"]
BOTH = ["--set", "seeds=[0,2]"]  # the config's seeds the shards are of
STATISTICS = ("rows", "claims", "trend", "matched", "controls", "settings", "splits", "ablation")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    for name, seeds in (("a", "[0]"), ("b", "[2]"), ("single", "[0,2]")):
        result = lsmia(*QUICK, "--set", f"seeds={seeds}", "--out", root / name)
        assert result.code == 0, result.err
    return root


def _results(path):
    return json.loads(path.read_text())


def test_merged_shards_equal_the_single_run(runs):
    out = runs / "merged"
    result = lsmia(*QUICK, *BOTH, "--merge", runs / "a/results.json", runs / "b/results.json", "--out", out)
    assert result.code == 0, result.err
    merged, single = _results(out / "results.json"), _results(runs / "single/results.json")
    # one code path, the same seeds, the same machine: every stage computes the same numbers, and the
    # statistics are one function of the rows (pipeline.study_statistics)
    for key in STATISTICS:
        assert merged[key] == single[key], key
    assert [(r["name"], r["seed"]) for r in merged["rows"]] == [(n, s) for s in (0, 2) for n in ("ls_pos", "hard", "ls_neg")]
    assert merged["settings"]["experiment"]["seeds"] == [0, 2]
    assert [s["seeds"] for s in merged["shards"]] == [[0], [2]]
    assert [s["file"] for s in merged["timings"]["shards"]] == [str(runs / "a/results.json"), str(runs / "b/results.json")]
    assert merged["prior"] == _results(runs / "a/results.json")["prior"]  # the headline is the first shard's
    assert "their numbers above are the first shard's" in merged["notes"][0]
    for run in merged["runs"]:  # runs point at the shards' directories, relative to the merge
        assert (out / run["attack"] / "results.pt").exists() and run["shard"].endswith(f"{'a' if run['seed'] == 0 else 'b'}/results.json")
    md = (out / "report.md").read_text()
    assert "grid_hard_seed0.png" in md and (out / "grid_hard_seed0.png").stat().st_size > 0  # shard A's attacks are here
    assert "| shard | seeds |" in md and "Image grids skipped" not in md
    assert _results(out / "run.json")["kind"] == "experiment-merge"


def test_seeds_outside_zero_to_n(runs):
    """seeds=[2] is seed 2 itself: targets and attack re-seeded with recipe seed + 2, rows and stages of seed 2."""
    b, single = _results(runs / "b/results.json"), _results(runs / "single/results.json")
    stages = single["settings"]["stages"]
    assert stages["targets"]["hard_seed2"]["seed"] == stages["targets"]["hard_seed0"]["seed"] + 2
    assert stages["attacks"]["2"]["seed"] == stages["attacks"]["0"]["seed"] + 2
    assert {r["seed"] for r in b["rows"]} == {2} and set(b["settings"]["stages"]["attacks"]) == {"2"}
    assert b["rows"] == [r for r in single["rows"] if r["seed"] == 2]  # a seed's numbers do not depend on the others
    assert (runs / "b/attacks/hard_seed2/results.pt").exists() and not (runs / "b/attacks/hard_seed0").exists()
    assert not any(t["reused"] for t in b["timings"]["stages"].values())


def test_shard_without_its_run_directory_skips_the_grids(runs, tmp_path):
    for name in ("a", "b"):  # only the results.json files, as committed under docs/
        (tmp_path / name).mkdir()
        shutil.copy(runs / name / "results.json", tmp_path / name / "results.json")
    out = tmp_path / "merged"
    result = lsmia(*QUICK, *BOTH, "--merge", tmp_path / "a/results.json", tmp_path / "b/results.json", "--out", out)
    assert result.code == 0, result.err
    assert _results(out / "results.json")["rows"] == _results(runs / "single/results.json")["rows"]
    md = (out / "report.md").read_text()
    assert "Image grids skipped: 3 attack directories of seed 0 are not on this machine" in md
    assert not list(out.glob("grid_*.png"))


def _refused(runs, tmp_path, *args, config=BOTH):
    out = tmp_path / "merged"
    line = one_error_line(lsmia(*QUICK, *config, "--merge", *args, "--out", out), "experiment")
    assert not (out / "results.json").exists()  # nothing written on a refusal
    return line


def test_shard_of_another_target_recipe(runs, tmp_path):
    line = _refused(runs, tmp_path, runs / "a/results.json", runs / "b/results.json",
                    config=[*BOTH, "--set", "target.set.epochs=3"])
    assert f"--merge {runs / 'a/results.json'} is a shard of another study" in line
    assert "settings.experiment differs" in line and "target.set.epochs" in line


def test_shard_whose_prior_stage_differs(runs, tmp_path):
    shard = _results(runs / "b/results.json")
    shard["settings"]["stages"]["prior"]["train"]["steps"] += 1  # what another prior recipe version records
    (tmp_path / "b").mkdir()
    (tmp_path / "b/results.json").write_text(json.dumps(shard))
    line = _refused(runs, tmp_path, runs / "a/results.json", tmp_path / "b/results.json")
    assert f"{tmp_path / 'b/results.json'} is a shard of another study: settings.stages differs" in line
    assert "prior.train.steps" in line


def test_same_seed_in_two_shards(runs, tmp_path):
    line = _refused(runs, tmp_path, runs / "a/results.json", runs / "single/results.json")
    assert f"row ('ls_pos', seed 0) is also in {runs / 'a/results.json'}" in line


def test_seed_outside_the_config(runs, tmp_path):
    line = _refused(runs, tmp_path, runs / "a/results.json", runs / "b/results.json", config=[])
    assert "row ('ls_pos', seed 2) is not an entry and seed of the given config" in line


def test_out_is_a_shard_directory(runs):
    line = one_error_line(lsmia(*QUICK, *BOTH, "--merge", runs / "a/results.json", "--out", runs / "a"), "experiment")
    assert "holds the shard" in line


def test_shard_that_does_not_exist(tmp_path):  # needs no run: refused before anything is read
    line = _refused(None, tmp_path, tmp_path / "nowhere/results.json")
    assert f"--merge {tmp_path / 'nowhere/results.json'} does not exist" in line
