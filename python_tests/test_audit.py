"""`lsmia audit`: model files loaded without running their code (TorchScript, torch.export), their input
contract checked, a whole audit on image folders written from the bundled 8x8 digits (numbers checked
against `lsmia evaluate` on the same attack), resume, and one clear line for every user mistake."""
from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import lsmia
from lsmia_ext.audit import load_audit_config, load_model, model_spec, sniff
from lsmia_ext.audit.example import ExampleNet
from lsmia_ext.data.sources import load_digits

# Tiny budgets: the whole audit on 8x8 digits in seconds.
TINY = ["prior.set.train.steps=20", "prior.set.fid.num_samples=50", "eval_model.set.epochs=3",
        "retrain.set.epochs=3", "nls.warmup=1", "nls.ramp=1",
        "attacks.ppa.set.initial.candidates=40", "attacks.ppa.set.initial.keep=8", "attacks.ppa.set.optim.steps=4",
        "attacks.ppa.set.final.keep=4", "attacks.ppa.set.final.transforms=4", "attacks.ppa.set.hflip=false",
        "evaluate.kes.steps=20", "evaluate.max_reference=200"]


def _tiny_args(*extra):
    return [a for item in TINY for a in ("--set", item)] + list(extra)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Digits 0-4 as private/digit_<d>/NNNN.png, digits 5-9 as a flat public/ folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("audit_data")
    raw = load_digits()
    for i in range(len(raw)):
        y = int(raw.labels[i])
        d = root / "private" / f"digit_{y}" if y < 5 else root / "public"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(raw.images[i, 0].numpy()).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def user_model(folders):
    """A user's network (plain PyTorch, inputs normalised to [-1, 1] outside it) trained on the private
    digits, saved as TorchScript, .pt2, pickle and state dict."""
    raw = load_digits()
    keep = raw.labels < 5
    x, y = raw.images[keep].float() / 255, raw.labels[keep]
    torch.manual_seed(0)
    net = ExampleNet(5, width=8)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(4):
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(net((x[idx] - 0.5) / 0.5), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    d = folders / "models"
    d.mkdir()
    torch.jit.save(torch.jit.script(net), str(d / "model.ts.pt"))
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (torch.rand(2, 1, 8, 8),), dynamic_shapes={"x": {0: batch}}),
                      str(d / "model.pt2"))
    for b in (2, 3):  # exported the usual way, without dynamic_shapes: specialised to batches of b
        torch.export.save(torch.export.export(net, (torch.rand(b, 1, 8, 8),)), str(d / f"static{b}.pt2"))
    torch.save(net, d / "model.pickle.pt")
    torch.save(net.state_dict(), d / "model_state.pt")
    wide = ExampleNet(7, width=8).eval()
    torch.jit.save(torch.jit.script(wide), str(d / "seven.ts.pt"))
    return net, d


CONTRACT = ["--image-size", "8", "--channels", "1", "--mean", "0.5", "--std", "0.5"]


def _audit(folders, model, out, *extra):
    code, _, err = lsmia("audit", "--model", model, "--private", folders / "private", "--public", folders / "public",
                         "--out", out, *extra)
    assert code == 0, err
    return code


def test_files_are_recognised_without_running_them(user_model):
    _, d = user_model
    assert sniff(d / "model.ts.pt") == "torchscript"
    assert sniff(d / "model.pt2") == "export"
    assert sniff(d / "model.pickle.pt") == "pickle"
    assert sniff(d / "model_state.pt") == "state_dict"


def test_torchscript_and_export_wrap_into_the_classifier_contract(user_model):
    net, d = user_model
    x = torch.rand(6, 1, 8, 8)
    want = net((x - 0.5) / 0.5)
    for name, features in (("model.ts.pt", True), ("model.pt2", False)):
        model = load_model(model_spec(d / name, image_size=8, channels=1, mean=[0.5], std=[0.5]))
        assert (model.num_classes, model.in_channels, model.image_size) == (5, 1, 8)
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
        assert model.has_features is features
        assert model.features(x).shape == ((6, 128) if features else (6, 5))
        xg = x.clone().requires_grad_(True)  # attacks differentiate through the model w.r.t. its input
        model(xg)[:, 0].sum().backward()
        assert xg.grad.abs().sum() > 0
    trusted = load_model(model_spec(d / "model.pickle.pt", image_size=8, channels=1, mean=[0.5], std=[0.5],
                                    trust_pickle=True))
    torch.testing.assert_close(trusted(x), want)


@pytest.mark.parametrize("case", ["pickle", "state_dict", "outputs", "image_size", "empty_folder", "compare",
                                  "no_contract", "private_test_missing", "private_test_classes"])
def test_user_mistakes_get_one_clear_line(case, folders, user_model, tmp_path):
    _, d = user_model
    model, extra, private = d / "model.ts.pt", list(CONTRACT), folders / "private"
    expected = {
        "pickle": "--trust-pickle", "state_dict": "holds only weights", "outputs": "outputs 7 classes but --private",
        "image_size": "cannot take 1 x 16 x 16 images", "empty_folder": "holds no images",
        "compare": "--compare nls retrains", "no_contract": "state the model's input contract",
        "private_test_missing": "--private-test", "private_test_classes": "missing: digit_4; not in --private: digit_7"}[case]
    if case == "pickle":
        model = d / "model.pickle.pt"
    elif case == "state_dict":
        model = d / "model_state.pt"
    elif case == "outputs":
        model = d / "seven.ts.pt"
    elif case == "image_size":  # torch.export specialised the program to 8 x 8 inputs
        model, extra[1] = d / "model.pt2", "16"
    elif case == "empty_folder":
        private = tmp_path / "private"
        shutil.copytree(folders / "private", private)
        (private / "digit_9").mkdir()
    elif case == "compare":
        extra += ["--compare", "nls"]
    elif case == "no_contract":
        extra = []
    elif case == "private_test_missing":
        extra += ["--private-test", tmp_path / "nowhere"]
    elif case == "private_test_classes":
        _held_out(folders, tmp_path / "held_out", per_class=1)
        (tmp_path / "held_out" / "digit_4").rename(tmp_path / "held_out" / "digit_7")
        extra += ["--private-test", tmp_path / "held_out"]
    rc, _, err = lsmia("audit", "--model", model, "--private", private, "--public", folders / "public",
                       "--out", tmp_path / "run", *extra)
    err = err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run" / "prior").exists()  # refused before any stage ran


@pytest.mark.parametrize("b", [2, 3])
def test_static_batch_export_is_fed_at_its_batch_size(user_model, b):
    """torch.export without dynamic_shapes takes batches of exactly b (anything else fails a guard);
    the model wrapper feeds it chunks of b, pads the last and drops the padded outputs."""
    net, d = user_model
    with pytest.raises(Exception, match="size"):
        torch.export.load(str(d / f"static{b}.pt2")).module()(torch.rand(b + 1, 1, 8, 8))
    model = load_model(model_spec(d / f"static{b}.pt2", image_size=8, channels=1, mean=[0.5], std=[0.5]))
    assert model.static_batch == b and f"batches of exactly {b}" in model.batch_note
    for n in (0, 1, b, 2 * b + 1, 7):
        x = torch.rand(n, 1, 8, 8)
        # the program runs the network's aten ops on each chunk; rows do not interact, but the batch of b
        # can sum in another order than n rows at once: float32 rounding of ~100-term dot products
        torch.testing.assert_close(model(x), net((x - 0.5) / 0.5), atol=1e-5, rtol=1e-5)
    xg = torch.rand(5, 1, 8, 8, requires_grad=True)
    model(xg)[:, 0].sum().backward()  # attacks differentiate through the padding and the chunks
    assert xg.grad.abs().sum() > 0
    dynamic = load_model(model_spec(d / "model.pt2", image_size=8, channels=1, mean=[0.5], std=[0.5]))
    assert dynamic.static_batch is None and dynamic.batch_note is None


def test_loading_a_torchscript_model_emits_no_deprecation_warning(user_model):
    _, d = user_model
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_model(model_spec(d / "model.ts.pt", image_size=8, channels=1, mean=[0.5], std=[0.5]))
        load_model(model_spec(d / "static2.pt2", image_size=8, channels=1, mean=[0.5], std=[0.5]))
    assert not [w for w in seen if issubclass(w.category, FutureWarning)], [str(w.message) for w in seen]
    with warnings.catch_warnings(record=True) as seen:  # only our own loads are quiet, not torch's API
        warnings.simplefilter("always")
        torch.jit.load(str(d / "model.ts.pt"))
    assert any(issubclass(w.category, FutureWarning) for w in seen)


def _held_out(folders, root, per_class=6):
    """A --private-test folder: the first images of each private class (their digits indices and labels)."""
    idx = []
    for cls in sorted(p for p in (folders / "private").iterdir()):
        (root / cls.name).mkdir(parents=True)
        for p in sorted(cls.iterdir())[:per_class]:
            shutil.copy(p, root / cls.name / p.name)
            idx.append(int(p.stem))
    return torch.tensor(idx)


def test_audit_end_to_end_matches_lsmia_evaluate_and_resumes(folders, user_model, tmp_path):
    net, d = user_model
    out = tmp_path / "audit"
    assert _audit(folders, d / "model.ts.pt", out, *CONTRACT, *_tiny_args()) == 0
    results = json.loads((out / "audit.json").read_text())
    (row,) = results["rows"]
    assert row["model"] == "your model" and row["attack"] == "ppa" and row["n_images"] == 20
    for key in ("acc1", "delta_eval", "fid", "precision", "kes_test", "test_acc"):
        assert isinstance(row[key], float), key
    md = (out / "report.md").read_text()
    assert f"{100 * row['acc1']:.1f} % of them" in md and "Classes that leak most" in md
    slice_label = "accuracy on a held-back slice of --private (may include training images)"
    assert results["test_acc_source"] == slice_label and slice_label in md and results["target_batch"] is None
    for name in ("report.html", "grid_model_ppa.png", "model.yaml", "manifest.json"):
        assert (out / name).stat().st_size > 0, name
    assert {"prior", "eval_model", "attack model ppa", "evaluate model ppa"} <= set(results["timings"]["stages"])

    # the same attack scored by `lsmia evaluate` (its own data loading, target from attack.json)
    assert lsmia("evaluate", "--attack", out / "attacks" / "model_ppa", "--eval-model", out / "eval_model",
                 "--set", "kes.steps=20", "--set", "max_reference=200", "--out", tmp_path / "eval.json").code == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    for key in ("acc1", "acc5", "delta_eval", "fid", "precision", "recall", "density", "coverage", "kes_test",
                "test_acc", "ece"):
        assert ev[key] == (None if row[key] is None else pytest.approx(row[key], rel=1e-6, abs=1e-9)), key

    # rerun: every stage reused; torch's deprecation warnings about our own loads stay quiet
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert _audit(folders, d / "model.ts.pt", out, *CONTRACT, *_tiny_args()) == 0
    assert not [w for w in seen if issubclass(w.category, FutureWarning)], [str(w.message) for w in seen]
    stages = json.loads((out / "audit.json").read_text())["timings"]["stages"]
    assert all(stages[k]["reused"] for k in ("prior", "eval_model", "attack model ppa", "evaluate model ppa"))

    # a .pt2 export of the same network specialised to batches of 2, with the first audit's prior and
    # evaluation model
    out2 = tmp_path / "audit_pt2"
    assert _audit(folders, d / "static2.pt2", out2, *CONTRACT, "--prior", str(out / "prior"), "--eval-model",
                  str(out / "eval_model"), *_tiny_args()) == 0
    results2 = json.loads((out2 / "audit.json").read_text())
    (row2,) = results2["rows"]
    assert not (out2 / "prior").exists() and not (out2 / "eval_model").exists()
    assert row2["test_acc"] == pytest.approx(row["test_acc"])
    assert "batches of exactly 2" in results2["target_batch"] and "batches of exactly 2" in (out2 / "report.md").read_text()

    # --private-test: the model's utility on the user's held-out folder
    idx = _held_out(folders, tmp_path / "held_out")
    out3 = tmp_path / "audit_held_out"
    assert _audit(folders, d / "model.ts.pt", out3, *CONTRACT, "--prior", str(out / "prior"), "--eval-model",
                  str(out / "eval_model"), "--private-test", tmp_path / "held_out", *_tiny_args()) == 0
    results3 = json.loads((out3 / "audit.json").read_text())
    raw = load_digits()
    expected = (net((raw.images[idx].float() / 255 - 0.5) / 0.5).argmax(1) == raw.labels[idx]).float().mean()
    assert results3["rows"][0]["test_acc"] == pytest.approx(expected.item())
    label = f"accuracy on --private-test {(tmp_path / 'held_out').resolve()} ({len(idx)} images)"
    assert results3["test_acc_source"] == label and label in (out3 / "report.md").read_text()
    assert results3["rows"][0]["acc1"] == pytest.approx(row["acc1"])  # the attack itself is the same


def test_audit_reports_the_interval_over_classes_and_the_spread_over_attack_seeds(folders, user_model, tmp_path):
    """--repeats 3: the attack rerun with seeds 0, 1, 2; each repeat's Acc@1 is the evaluation model's top-1
    on its images; the spread is computed from them; the interval over classes holds the headline."""
    import statistics

    from lsmia_ext.metrics import attack_accuracy, load_attack_results
    from lsmia_ext.models import load_classifier

    _, d = user_model
    out = tmp_path / "audit"
    code, stdout, err = lsmia("audit", "--model", d / "model.ts.pt", "--private", folders / "private", "--public",
                              folders / "public", "--out", out, "--repeats", "3", *CONTRACT, *_tiny_args())
    assert code == 0, err
    results = json.loads((out / "audit.json").read_text())
    (row,) = results["rows"]
    rep = row["repeats"]
    assert results["repeats"] == 3 and rep["attack_seeds"] == [0, 1, 2] and rep["acc1"][0] == row["acc1"]
    eval_net = load_classifier(out / "eval_model")
    _, first, _ = load_attack_results(out / "attacks" / "model_ppa")
    for r, acc in enumerate(rep["acc1"][1:], start=1):
        attack_dir = out / "attacks" / f"model_ppa_repeat{r}"
        assert json.loads((attack_dir / "attack.json").read_text())["seed"] == r
        _, images, labels = load_attack_results(attack_dir)
        assert not torch.equal(images, first)  # another attack, not a copy of the first
        assert acc == pytest.approx(attack_accuracy(eval_net, images, labels, topk=(1,))["acc1"])
    assert (rep["min"], rep["max"]) == (min(rep["acc1"]), max(rep["acc1"]))
    assert rep["mean"] == pytest.approx(statistics.fmean(rep["acc1"]))
    assert rep["sd"] == pytest.approx(statistics.stdev(rep["acc1"]))
    assert row["acc1_ci_low"] <= row["acc1"] <= row["acc1_ci_high"]
    md = (out / "report.md").read_text()
    assert "How far this number can move" in md
    assert f"between {100 * row['acc1_ci_low']:.1f} and {100 * row['acc1_ci_high']:.1f} %" in md
    gave = (f"{100 * rep['min']:.1f} % every time" if rep["min"] == rep["max"] else
            f"{100 * rep['min']:.1f} to {100 * rep['max']:.1f} %")
    assert f"rerun with 3 attack seeds it gave {gave}" in md
    assert f"over 3 attack seeds {100 * rep['min']:.1f}-{100 * rep['max']:.1f} %" in stdout

    # an evaluation written before the interval existed gets it from the same hits (and the same seed)
    from lsmia_ext.audit.uncertainty import add_uncertainty
    from lsmia_ext.audit.config import load_audit_config as load_cfg

    old = {k: v for k, v in row.items() if k not in ("acc1_ci_low", "acc1_ci_high", "repeats")}
    add_uncertainty([old], {("model", "ppa"): [(0, out / "attacks" / "model_ppa")]}, eval_net,
                    load_cfg(None, {"evaluate.kes.steps": 20}).evaluate)
    assert (old["acc1_ci_low"], old["acc1_ci_high"]) == (row["acc1_ci_low"], row["acc1_ci_high"])
    assert "repeats" not in old


def test_attack_suite_reports_every_attack_and_the_worst_case(folders, user_model, tmp_path):
    """--attack-suite adaptive: every attack of the suite on the user's model, on top of the audit's PPA budget
    (A3: 2x its steps, 4x its candidates), surrogates distilled with suite_augmentation's budget; the worst
    case is the attack with the highest Acc@1."""
    from lsmia_ext.attacks.suite import ADAPTIVE

    _, d = user_model
    out = tmp_path / "audit"
    surrogates = ["suite_augmentation.steps=5", "suite_augmentation.prior_samples=40", "suite_augmentation.holdout=10"]
    code, stdout, err = lsmia("audit", "--model", d / "model.ts.pt", "--private", folders / "private", "--public",
                              folders / "public", "--out", out, "--attack-suite", "adaptive", *CONTRACT,
                              *_tiny_args(*[a for item in surrogates for a in ("--set", item)]))
    assert code == 0, err
    results = json.loads((out / "audit.json").read_text())
    rows = results["rows"]
    assert [r["attack"] for r in rows] == list(ADAPTIVE) and results["attack_suite"] == "adaptive"
    worst = results["worst_case"]["model"]
    assert worst["per_attack"] == {r["attack"]: r["acc1"] for r in rows}
    assert worst["acc1"] == max(r["acc1"] for r in rows) and worst["per_attack"][worst["attack"]] == worst["acc1"]
    settings = {r["attack"]: json.loads((out / r["attack_dir"] / "attack.json").read_text())["settings"] for r in rows}
    assert (settings["A0"]["optim"]["steps"], settings["A0"]["initial"]["candidates"]) == (4, 40)  # TINY's budget
    assert (settings["A3"]["optim"]["steps"], settings["A3"]["initial"]["candidates"]) == (8, 160)
    assert settings["A1"]["selection_score"] == "logit_margin" and settings["A1-loss"]["optim"]["loss"] == "max_margin"
    assert settings["A2"]["augmentation"]["steps"] == 5 and settings["A0"].get("augmentation") is None
    md = (out / "report.md").read_text()
    assert f"the worst case is {worst['attack']}: attack Acc@1 {100 * worst['acc1']:.1f} %" in md
    assert f"worst case over the adaptive suite: {worst['attack']}, attack Acc@1 {100 * worst['acc1']:.1f} %" in stdout


@pytest.mark.slow
def test_compare_nls_retrains_a_module_spec(folders, user_model, tmp_path):
    _, d = user_model
    spec = tmp_path / "model.yaml"
    spec.write_text(f"kind: module\nimport: lsmia_ext.audit.example:ExampleNet\nkwargs: {{width: 8}}\n"
                    f"state_dict: {d / 'model_state.pt'}\n"
                    "image_size: 8\nchannels: 1\nmean: [0.5]\nstd: [0.5]\n")
    out = tmp_path / "audit"
    assert _audit(folders, spec, out, "--compare", "nls", *_tiny_args()) == 0
    results = json.loads((out / "audit.json").read_text())
    assert [(r["key"], r["alpha"]) for r in results["rows"]] == [("model", None), ("retrained_hard", 0.0),
                                                                  ("retrained_nls", -0.05)]
    assert results["rows"][2]["test_acc"] > 0.5  # the retrained network learned the digits
    md = (out / "report.md").read_text()
    assert "negative label smoothing (alpha -0.05)" in md and "grid_retrained_nls_ppa.png" in md


def test_shipped_audit_config_loads():
    cfg = load_audit_config()
    assert set(cfg.attacks) == {"ppa", "gmi", "miface"} and cfg.nls.alpha == -0.05
