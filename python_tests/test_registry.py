"""lsmia_ext.registry.Registry and the five registries built on it: unknown names list the known ones,
configs take their allowed values from the registries, attack sections belong to their attack."""
import pytest

from lsmia_ext.config import ConfigError, config_hash, load_config
from lsmia_ext.registry import Registry, UnknownName


def test_register_get_names_and_unknown_name():
    reg = Registry("colour")
    assert reg.register("red", 1) == 1

    @reg.register("blue")
    def blue():
        return 2

    assert reg.get("blue") is blue and reg.names() == ("red", "blue") and "red" in reg and list(reg) == ["red", "blue"]
    assert reg.check("red") == "red"
    with pytest.raises(UnknownName, match="unknown colour 'green'; allowed: red, blue"):
        reg.get("green")
    with pytest.raises(ValueError, match="unknown colour"):  # UnknownName is a ValueError
        reg.check(["unhashable"])
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        reg.register("red", 3)


def test_each_registry_names_its_entries():
    from lsmia_ext.attacks import ATTACKS, IDENTITY_LOSSES, identity_loss
    from lsmia_ext.defenses import DEFENSES, build_defense
    from lsmia_ext.models import MODELS, build_model
    from lsmia_ext.priors import GENERATOR_KINDS, generator_from_spec

    assert set(ATTACKS.names()) == {"ppa", "gmi", "miface"}
    assert set(IDENTITY_LOSSES.names()) == {"poincare", "ce", "max_margin"}
    assert set(DEFENSES.names()) == {"none", "mid", "bido", "tl_dmi", "random_erasing", "trap_mid"}
    assert {"small_cnn", "small_resnet", "resnet18"} <= set(MODELS.names())
    assert set(GENERATOR_KINDS.names()) == {"lsmia", "module", "stylegan2-ada"}
    for call, message in [(lambda: identity_loss("l2"), "unknown identity loss 'l2'; allowed: "),
                          (lambda: build_defense({"kind": "dp"}), "defense 'dp'; allowed: "),
                          (lambda: build_model("vgg", 5, 1, 28), "unknown model 'vgg'; allowed: "),
                          (lambda: generator_from_spec({"kind": "biggan"}), "unknown generator kind 'biggan'; allowed: ")]:
        with pytest.raises(ValueError, match=message):
            call()
    assert type(build_defense({"kind": "mid", "beta": 0.1})).__name__ == "MID"


@pytest.mark.parametrize("config, override, message", [
    ("attack-ppa", {"attack": "fgsm"}, "attack: .*unknown attack 'fgsm'; allowed: .*ppa"),
    ("attack-ppa", {"optim.loss": "l1"}, "optim.loss: .*unknown identity loss 'l1'; allowed: .*poincare"),
    ("train-digits-target", {"defense.kind": "dp"}, "defense.kind: .*unknown defense 'dp'; allowed: .*mid"),
    ("train-digits-target", {"model.name": "vgg"}, "model.name: .*unknown model 'vgg'; allowed: .*small_cnn"),
])
def test_configs_take_allowed_names_from_the_registries(config, override, message):
    from lsmia_ext.attacks import AttackConfig
    from lsmia_ext.train import TrainConfig

    with pytest.raises(ConfigError, match=message):
        load_config(AttackConfig if config.startswith("attack") else TrainConfig, config, override)


def test_attack_sections_belong_to_their_attack():
    from lsmia_ext.attacks import AttackConfig, load_attack_config

    with pytest.raises(ConfigError, match="miface: .*only attack 'miface' takes a miface section; this config's "
                                          "attack is 'ppa'"):
        load_attack_config("attack-ppa", {"miface.init": "noise"})
    with pytest.raises(ConfigError, match="gmi: .*attack is 'miface'"):
        load_attack_config("attack-miface", {"gmi.latent": "w"})
    ppa, gmi = AttackConfig(), AttackConfig(attack="gmi")
    assert ppa.gmi is None and ppa.miface is None
    assert gmi.gmi.samples_per_class == 10 and gmi.miface is None
    assert load_attack_config("attack-gmi", {"gmi.latent": "w"}).gmi.latent == "w"
    # The dump (stage hashes, resume fingerprints) still holds every section, absent ones at their defaults.
    dumped = ppa.model_dump(mode="json")
    assert dumped["gmi"] == {"samples_per_class": 10, "latent": "z", "disc_weight": 0.01, "truncation_psi": 1.0}
    assert dumped["miface"] == {"samples_per_class": 1, "init": "grey", "tv_weight": 0.05, "l2_weight": 0.001}
    assert config_hash(ppa) == config_hash(dumped)
    assert ppa.needs_prior and gmi.needs_prior and not AttackConfig(attack="miface").needs_prior
