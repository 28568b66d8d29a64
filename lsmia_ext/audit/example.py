"""A model to audit, trained the way a user would (plain PyTorch, no lsmia code), and its data as image
folders: `python -m lsmia_ext.audit.example --out DIR` (about 30 s on 2 cores).

Data: Fashion-MNIST identity-like sub-classes (lsmia_ext.data.identities) of categories 0-4, two per
category: one private (DIR/private/<identity>/, up to --per-class images each), one public (DIR/public/, a
flat folder, no labels). Model: ExampleNet trained on every private image with inputs normalised to
[-1, 1] outside the network (a contract the audit must be told). Written as TorchScript (model.ts.pt),
torch.export (model.pt2) and a module spec over a state dict (model.yaml, for --compare nls).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ..runio import save_checkpoint, write_text


class ExampleNet(nn.Module):
    """A user's classifier: two conv blocks and an MLP head; features() is its penultimate layer."""

    def __init__(self, num_classes: int = 5, channels: int = 1, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * width, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def write_folders(out: Path, per_class: int, public_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Writes the PNG folders; returns the private images (float [0, 1]) and labels."""
    from PIL import Image

    from ..data import DataConfig, load_scenario

    sc = load_scenario(DataConfig(name="fashion-mnist", image_size=28, train_per_class=per_class, test_fraction=0.1,
                                  identities={"categories": [0, 1, 2, 3, 4], "per_category": 2,
                                              "private_per_category": 1}))
    xs, ys = zip(*(sc.tensors(s) for s in ("private_train", "private_test")))
    x, y = torch.cat(xs), torch.cat(ys)
    pub = torch.cat([sc.tensors("public_train")[0], sc.tensors("public_test")[0]])[:public_max]

    def save(img: torch.Tensor, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img[0] * 255).round().byte().numpy()).save(path)

    # numbered so that the sorted folder names are the model's label order (what the audit assumes)
    names = [f"{i}_" + n.replace("/", "-").replace(" ", "_").replace("#", "") for i, n in enumerate(sc.class_names)]
    for i, (img, label) in enumerate(zip(x, y.tolist())):
        save(img, out / "private" / names[label] / f"{i:05d}.png")
    for i, img in enumerate(pub):
        save(img, out / "public" / f"{i:05d}.png")
    return x, y


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> ExampleNet:
    torch.manual_seed(seed)
    net = ExampleNet(int(y.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(net((x[idx] - 0.5) / 0.5), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def export(net: ExampleNet, out: Path) -> None:
    """model.ts.pt, model.pt2 and model.yaml (+ model_state.pt), all with the contract mean 0.5, std 0.5."""
    net = net.eval()
    torch.jit.save(torch.jit.script(net), str(out / "model.ts.pt"))
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (torch.rand(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}}),
                      str(out / "model.pt2"))
    save_checkpoint(out / "model_state.pt", net.state_dict())
    spec = {"kind": "module", "import": "lsmia_ext.audit.example:ExampleNet", "kwargs": {"num_classes": 5},
            "state_dict": "model_state.pt", "image_size": 28, "channels": 1, "num_classes": 5,
            "value_range": [0.0, 1.0], "mean": [0.5], "std": [0.5]}
    write_text(out / "model.yaml", yaml.safe_dump(spec, sort_keys=False))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=300, help="private images per identity")
    p.add_argument("--public", type=int, default=3000, help="public images")
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    if (out / "private").exists() or (out / "public").exists():
        raise SystemExit(f"{out} already holds private/ or public/: choose a new --out")
    x, y = write_folders(out, args.per_class, args.public)
    export(train(x, y, args.epochs), out)
    print(f"wrote {out}/private ({len(x)} images), {out}/public, model.ts.pt, model.pt2, model.yaml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
