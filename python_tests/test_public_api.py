"""Every name of the public API resolves (the stage entry points are imported lazily)."""
import pytest

import lsmia_ext


@pytest.mark.parametrize("name", lsmia_ext.__all__)
def test_public_name_resolves(name):
    assert getattr(lsmia_ext, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lsmia_ext.nope  # noqa: B018
