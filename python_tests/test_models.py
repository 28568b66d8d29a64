"""Models: registry contract, input check, pretrained state dicts, checkpoints; ECE."""
import pytest
import torch

from lsmia_ext.metrics.calibration import expected_calibration_error
from lsmia_ext.models import available_models, build_model, classifier_state, load_classifier
from lsmia_ext.runio import save_checkpoint


@pytest.mark.parametrize("name,channels,size", [("small_cnn", 1, 28), ("small_cnn", 3, 8), ("small_resnet", 1, 28),
                                                ("small_resnet", 3, 64), ("resnet18", 1, 32), ("densenet121", 3, 32)])
def test_contract(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=channels, image_size=size).eval()
    x = torch.rand(2, channels, size, size)
    feats, logits = model.features(x), model(x)
    assert logits.shape == (2, 7) and feats.shape == (2, model.feature_dim)
    assert torch.allclose(model.head(feats), logits, atol=1e-5)
    assert (model.num_classes, model.in_channels, model.image_size) == (7, channels, size)
    with pytest.raises(ValueError, match=f"expects images \\(B, {channels}, H, W\\)"):
        model(torch.rand(2, 2, size, size))


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("resnet50", 32), ("resnet152", 32), ("inception_v3", 75)])
def test_big_torchvision_nets(name, size):
    model = build_model(name, 3, 1, size).eval()
    assert model(torch.rand(1, 1, size, size)).shape == (1, 3)


def test_registry_errors():
    assert {"small_cnn", "small_resnet", "resnet18", "resnet50", "resnet152", "densenet121",
            "inception_v3"} <= set(available_models())
    with pytest.raises(ValueError, match="unknown model 'vgg'; allowed: .*small_cnn"):
        build_model("vgg", 5, 1, 28)
    with pytest.raises(ValueError, match="image_size >= 75"):
        build_model("inception_v3", 5, 3, 64)
    with pytest.raises(ValueError, match="in_channels must be 1 or 3"):
        build_model("small_cnn", 5, 4, 28)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("small_cnn", 5, 1, 28, pretrained="x.pt")


def test_pretrained_local_state_dict_grey_input(tmp_path):
    import torchvision

    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", 4, 1, 32, pretrained=tmp_path / "r18.pth").eval()
    trunk = model.trunk
    # the loader runs this same sum on a copy of the same tensor, and copies the rest: bit-equal
    assert torch.equal(trunk.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(trunk.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight)
    # a grey image sees the pretrained response to the same image repeated to RGB
    imagenet.fc = torch.nn.Identity()
    imagenet.eval()
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(model.features(x), imagenet((x.expand(-1, 3, -1, -1) - 0.5) / 0.5), atol=1e-4)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        build_model("resnet18", 4, 3, 32, pretrained=tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        build_model("resnet18", 4, 3, 32, pretrained=tmp_path / "missing.pth")


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = build_model("small_resnet", 5, 1, 28)
    model(torch.rand(8, 1, 28, 28))  # move BatchNorm statistics away from their init
    model.eval()
    save_checkpoint(tmp_path / "model.pt", classifier_state(model, "small_resnet", note="x"))
    loaded = load_classifier(tmp_path)
    x = torch.rand(3, 1, 28, 28)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded(x), model(x))  # copied weights, the same code and input: bit-equal
    save_checkpoint(tmp_path / "other.pt", {"weights": {}})
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        load_classifier(tmp_path / "other.pt")


def test_ece_known_values():
    probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35], [0.62, 0.38]])
    labels = torch.tensor([0, 1, 1, 0, 1])
    # bins of width 0.1: 0.95 right, 0.85 wrong, 0.75 right, {0.65 right, 0.62 wrong} share a bin
    expected = (abs(0.95 - 1) + abs(0.85 - 0) + abs(0.75 - 1) + abs(0.65 + 0.62 - 1)) / 5
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected, abs=1e-6)
    # one bin: |mean confidence - accuracy|
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(abs(3.82 / 5 - 3 / 5), abs=1e-6)
    torch.manual_seed(0)
    p = torch.rand(20000)
    calibrated = torch.stack([p, 1 - p], 1)
    y = (torch.rand(20000) >= p).long()  # class 0 with probability p
    assert expected_calibration_error(calibrated, y) < 0.02


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError, match="labels must lie in"):
        expected_calibration_error(torch.full((2, 2), 0.5), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(torch.ones(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(torch.full((2, 2), 0.5), torch.tensor([0, 1]), n_bins=0)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        expected_calibration_error(torch.ones(3), torch.tensor([0, 1, 0]))
