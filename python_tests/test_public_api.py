"""Every name of the public API resolves (the stage entry points are imported lazily)."""
import pytest

import lsmia_ext


@pytest.mark.parametrize("name", lsmia_ext.__all__)
def test_public_name_resolves(name):
    assert getattr(lsmia_ext, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lsmia_ext.nope  # noqa: B018


def test_cli_help_names_the_package(capsys):
    from lsmia_ext.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "lsmia: label smoothing and model inversion, from training to the attack report." in help_text
