"""Every name of the public API resolves (the stage entry points are imported lazily)."""
import pytest

import lsmia_ext


@pytest.mark.parametrize("name", lsmia_ext.__all__)
def test_public_name_resolves(name):
    assert getattr(lsmia_ext, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lsmia_ext.nope  # noqa: B018


def test_cli_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    """A truncated checkpoint and an --out that is a file end in `lsmia CMD: error: ...`, exit code 2."""
    from lsmia_ext.cli import main

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    prior = tmp_path / "prior"
    prior.mkdir()
    code = main(["attack", "--config", "attack-ppa", "--target", str(bad), "--prior", str(prior),
                 "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and "lsmia attack: error:" in err and "Traceback" not in err
    assert "model.pt" in err
    out_file = tmp_path / "taken"
    out_file.write_text("x")
    code = main(["train", "--config", "train-digits-target", "--out", str(out_file), "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and "lsmia train: error:" in err and "taken" in err
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "lsmia: label smoothing and model inversion, from training to the attack report." in help_text
