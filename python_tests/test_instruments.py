"""Shipped instruments (lsmia_ext/instruments): a study's prior or evaluation-model stage whose hash is a shipped
one's is filled from the shipped files (no training), a changed config trains, a damaged file is refused in one
line with nothing finished, --train-instruments trains anyway; the package's own instruments match their
manifests. Instruments of the digits scenario are shipped into tmp folders (SHIPPED_DIR monkeypatched)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import lsmia_ext.train
from conftest import digits_cfg, lsmia
from lsmia_ext.config import load_config, parse_overrides
from lsmia_ext.errors import UserInputError
from lsmia_ext.experiment.graph import instrument_stage, study_graph
from lsmia_ext.instruments import instruments, shipped
from lsmia_ext.instruments.ship import ship_stage

PINNED = json.loads((Path(__file__).parent / "stage_hashes.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _record(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "stage.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits evaluation model and a tiny digits prior, trained as study stages (nothing shipped yet), and
    both shipped into a folder of their own."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("instruments")
    empty, dest = root / "none", root / "shipped"
    empty.mkdir()
    from lsmia_ext.priors import PriorConfig

    prior = load_config(PriorConfig, "prior-digits", parse_overrides(
        ["train.steps=2", "train.sample_every=1", "train.checkpoint_every=1", "fid.num_samples=50",
         "fid.extractor_epochs=1", "train.num_threads=1"]))
    clf = digits_cfg("epochs=1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shipped, "SHIPPED_DIR", empty)
        for name, cfg in (("prior", prior), ("eval_model", clf)):
            out = instrument_stage(name, cfg, root / "run" / name, cfg.run_hash(), True)
            assert not out["shipped"] and not out["reused"]
            ship_stage(root / "run" / name, dest, notes=("test",))
    return {"dest": dest, "prior": prior, "clf": clf, "root": root}


@pytest.fixture
def no_training(monkeypatch):
    """Training functions that fail the test when called."""
    import lsmia_ext.priors

    def refuse(*_a, **_k):
        pytest.fail("a stage with a shipped instrument's hash must not train")

    monkeypatch.setattr(lsmia_ext.train, "train_classifier", refuse)
    monkeypatch.setattr(lsmia_ext.priors, "train_prior", refuse)


@pytest.fixture
def spy_training(monkeypatch):
    """The real train_classifier, recording its calls."""
    calls, real = [], lsmia_ext.train.train_classifier

    def spy(cfg, out_dir, *a, **k):
        calls.append(Path(out_dir))
        return real(cfg, out_dir, *a, **k)

    monkeypatch.setattr(lsmia_ext.train, "train_classifier", spy)
    return calls


def test_ship_writes_manifest_with_hash_and_sha256(trained):
    dest = trained["dest"]
    found = {i.manifest["stage"]: i for i in (shipped.Instrument(p.stem, p.with_suffix(""), json.loads(p.read_text()))
                                               for p in dest.glob("*.json"))}
    assert set(found) == {"prior", "eval_model"}
    for stage, cfg in (("prior", trained["prior"]), ("eval_model", trained["clf"])):
        inst, run_dir = found[stage], trained["root"] / "run" / stage
        m = inst.manifest
        assert m["stage_hash"] == _record(run_dir)["config_hash"] == cfg.run_hash() == m["run_hash"]
        assert m["result"] == _record(run_dir)["result"] and m["notes"] == ["test"]
        assert m["machine"]["wall_s"] == _record(run_dir)["wall_s"] and m["trained"] == m["trained_at"][:10]
        # every file of the finished stage but its record and the prior's resume checkpoint, byte for byte
        stage_files = {k: v for k, v in _files(run_dir).items() if k not in ("stage.json", "checkpoint.pt")}
        assert _files(inst.folder) == stage_files and set(m["files"]) == set(stage_files)
        assert m["bytes"] == sum(len(v) for v in stage_files.values())
        inst.read_files()  # every sha256 matches
    assert set(found["prior"].manifest["omitted"]) == {"checkpoint.pt"} and not found["eval_model"].manifest["omitted"]
    assert "samples/step_00001.png" in found["prior"].manifest["files"]


@pytest.mark.parametrize("name", ["prior", "eval_model"])
def test_shipped_hash_fills_without_training(trained, tmp_path, monkeypatch, no_training, name):
    monkeypatch.setattr(shipped, "SHIPPED_DIR", trained["dest"])
    cfg = trained["prior"] if name == "prior" else trained["clf"]
    d, inst = tmp_path / name, next(i for i in instruments() if i.manifest["stage"] == name)
    out = instrument_stage(name, cfg, d, cfg.run_hash(), True)
    assert out["shipped"] == inst.description == f"shipped checkpoint (trained {inst.manifest['trained']}, this config)"
    assert not out["reused"] and out["result"] == inst.manifest["result"]
    record = _record(d)
    assert record["finished"] and record["shipped"] == inst.description and record["result"] == inst.manifest["result"]
    assert {k: v for k, v in _files(d).items() if k != "stage.json"} == _files(inst.folder)
    if name == "prior":
        from lsmia_ext.priors import load_generator

        assert load_generator(d).sample(2, seed=0).shape[0] == 2
    else:
        from lsmia_ext.models import load_classifier

        x = torch.rand(3, 1, 8, 8)
        torch.testing.assert_close(load_classifier(d)(x), load_classifier(trained["root"] / "run" / name)(x), rtol=0, atol=0)
    again = instrument_stage(name, cfg, d, cfg.run_hash(), True)  # reused, still saying where it came from
    assert again["reused"] and again["shipped"] == inst.description


def test_changed_config_trains(trained, tmp_path, monkeypatch, spy_training):
    monkeypatch.setattr(shipped, "SHIPPED_DIR", trained["dest"])
    cfg = digits_cfg("epochs=1", "seed=1")
    assert cfg.run_hash() != trained["clf"].run_hash()
    out = instrument_stage("eval_model", cfg, tmp_path / "e", cfg.run_hash(), True)
    assert spy_training == [tmp_path / "e"] and not out["shipped"] and "shipped" not in _record(tmp_path / "e")


def test_flag_trains_even_a_stage_filled_before(trained, tmp_path, monkeypatch, spy_training):
    monkeypatch.setattr(shipped, "SHIPPED_DIR", trained["dest"])
    cfg, d = trained["clf"], tmp_path / "e"
    assert instrument_stage("eval_model", cfg, d, cfg.run_hash(), True)["shipped"] and spy_training == []
    out = instrument_stage("eval_model", cfg, d, cfg.run_hash(), False)  # --train-instruments
    assert spy_training == [d] and not out["shipped"] and not out["reused"]
    record = _record(d)
    assert record["finished"] and "shipped" not in record
    # a stage trained here of the shipped hash is reused as it is, the package's copy is not put over it
    again = instrument_stage("eval_model", cfg, d, cfg.run_hash(), True)
    assert again["reused"] and not again["shipped"] and spy_training == [d]


def test_flag_reaches_the_graph(monkeypatch, tmp_path):
    from lsmia_ext.experiment import load_experiment_config

    cfg = load_experiment_config("experiment-digits", "quick")
    for flag in (False, True):
        nodes = {n.key: n for n in study_graph(cfg, cfg.stages, tmp_path, lambda h: h, False, flag)}
        for key in ("prior", "eval_model"):
            assert nodes[key].fn is instrument_stage and nodes[key].args[-1] is (not flag)
    seen = {}
    monkeypatch.setattr("lsmia_ext.experiment.pipeline.run_experiment",
                        lambda *a, **k: seen.update(k) or {"timings": {"total_wall_s": 0}})
    for argv, want in (((), False), (("--train-instruments",), True)):
        assert lsmia("experiment", "--config", "experiment-digits", "--out", tmp_path / "x", *argv).code == 0
        assert seen["train_instruments"] is want


def test_damaged_file_is_refused_in_one_line(trained, tmp_path, monkeypatch, no_training):
    dest = tmp_path / "shipped"
    shutil.copytree(trained["dest"], dest)
    monkeypatch.setattr(shipped, "SHIPPED_DIR", dest)
    inst = next(i for i in instruments() if i.manifest["stage"] == "eval_model")
    model = inst.folder / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    cfg, d = trained["clf"], tmp_path / "e"
    with pytest.raises(UserInputError) as err:
        instrument_stage("eval_model", cfg, d, cfg.run_hash(), True)
    msg = str(err.value)
    assert "\n" not in msg and str(model) in msg and "damaged" in msg and "--train-instruments" in msg
    assert not _record(d)["finished"] and sorted(p.name for p in d.iterdir()) == ["stage.json"]
    model.unlink()  # a file missing from the install: the same one line
    with pytest.raises(UserInputError, match="cannot be read.*--train-instruments"):
        instrument_stage("eval_model", cfg, d, cfg.run_hash(), True)
    manifest = inst.folder.with_suffix(".json")
    manifest.write_text(manifest.read_text()[:100])  # a truncated manifest
    with pytest.raises(UserInputError, match=f"{manifest} is not a shipped-instrument manifest.*--train-instruments"):
        instrument_stage("eval_model", cfg, d, cfg.run_hash(), True)


def test_ship_refuses_targets_and_unfinished_stages(trained, tmp_path):
    d = tmp_path / "target"
    shutil.copytree(trained["root"] / "run" / "eval_model", d)
    record = _record(d)
    (d / "stage.json").write_text(json.dumps({**record, "stage": "target:hard_seed0"}))
    with pytest.raises(UserInputError, match="never a target"):
        ship_stage(d, tmp_path / "dest")
    (d / "stage.json").write_text(json.dumps({**record, "finished": False}))
    with pytest.raises(UserInputError, match="not finished"):
        ship_stage(d, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_report_says_which_instruments_came_shipped():
    from lsmia_ext.experiment.report import _stage_rows, instruments_sentence

    text = "shipped checkpoint (trained 2026-12-07, this config)"
    stages = {"prior": {"wall_s": 0.1, "reused": False, "original_wall_s": 0.1, "shipped": text},
              "eval_model": {"wall_s": 40.0, "reused": False, "original_wall_s": 40.0}}
    assert instruments_sentence(stages) == ("Not trained in this run, from the package (lsmia_ext/instruments, "
                                            f"sha256-checked): prior: {text}; `lsmia experiment --train-instruments` "
                                            "trains them. ")
    assert instruments_sentence({"eval_model": stages["eval_model"]}) == ""
    assert _stage_rows({"stages": stages}) == [["prior", "0.1", f"ran: {text}"], ["eval_model", "40.0", "ran"]]


def test_package_instruments_match_their_manifests():
    """The instruments the package ships (the default scenario's): every file's sha256 is its manifest's, no file
    is unlisted (the installed tree holds all of them), and each is the default study's stage config."""
    found = instruments()
    assert {i.manifest["stage"] for i in found} >= {"prior", "eval_model"}
    for inst in found:
        m = inst.manifest
        inst.read_files()
        assert set(_files(inst.folder)) == set(m["files"]), inst.name
        pinned = PINNED["experiment-fmnist"].get(m["stage"])  # the second judge is not in the default study
        assert pinned is None or m["run_hash"] == pinned, inst.name
        assert m["trained"] and m["machine"]["torch_threads"] == 1 and m["notes"]


def test_study_fills_its_instruments_and_reports_them(tmp_path, monkeypatch):
    """The quick digits study, its prior and evaluation model shipped from an earlier run of the same config:
    neither is trained, results.json timings and the report say they came shipped, the prior's numbers are
    the shipped ones."""
    import lsmia_ext.priors
    from lsmia_ext.experiment import load_experiment_config, run_experiment

    cfg = load_experiment_config("experiment-digits", "quick")
    empty, dest = tmp_path / "none", tmp_path / "shipped"
    empty.mkdir()
    monkeypatch.setattr(shipped, "SHIPPED_DIR", empty)
    for name, stage_cfg in (("prior", cfg.stages.prior), ("eval_model", cfg.stages.eval_model)):
        # the digits scenario has no identity assignment: a stage's hash is its config's
        instrument_stage(name, stage_cfg, tmp_path / "first" / name, stage_cfg.run_hash(), True)
        ship_stage(tmp_path / "first" / name, dest)
    monkeypatch.setattr(shipped, "SHIPPED_DIR", dest)
    monkeypatch.setattr(lsmia_ext.priors, "train_prior", lambda *a, **k: pytest.fail("the prior is shipped"))
    results = run_experiment(cfg, tmp_path / "study", log=lambda *a: None)
    stages = results["timings"]["stages"]
    for name in ("prior", "eval_model"):
        assert stages[name]["shipped"].startswith("shipped checkpoint (trained ") and not stages[name]["reused"]
        assert _record(tmp_path / "study" / name)["shipped"] == stages[name]["shipped"]
    assert not any("shipped" in t for k, t in stages.items() if k not in ("prior", "eval_model"))
    assert results["prior"]["fid"] == _record(tmp_path / "first" / "prior")["result"]["fid"]
    assert results["eval_model"]["test_acc"] == _record(tmp_path / "first" / "eval_model")["result"]["test_acc"]
    md = (tmp_path / "study" / "report.md").read_text()
    assert "Not trained in this run, from the package" in md and "| prior | " in md and "ran: shipped checkpoint" in md
