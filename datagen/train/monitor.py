"""Per-epoch look at the model: label fidelity and error of reconstructions, and sample grids.

Label fidelity is the share of a fixed held-out batch of the train split whose reconstruction
G(E(x)) a small classifier labels the same as x. The classifier trains once, on the rest of the
train split, and is saved in the run directory so a resumed run measures with the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from datagen.classify.fit import label_fidelity, train_classifier
from datagen.classify.nets import small_cnn
from datagen.common.grids import pairs_grid, save_grid
from datagen.data.pixels import pixel_distance, to_model_input
from datagen.model import checkpoint
from datagen.model.latent import Model


HOLDOUT = 256  # images in the fixed monitoring batch
GRID = 32  # of which this many appear in the reconstruction grid


def grid_paths(samples_dir: Path, epoch: int) -> dict[str, Path]:
    """The PNGs `Monitor.measure` draws for an epoch: reconstruction pairs, G on the fixed N(0, I) noise, and
    (where the recipe fits one) G on samples of the fitted prior."""
    return {kind: samples_dir / f"epoch-{epoch:03d}-{kind}.png" for kind in ("recon", "gauss", "prior")}


@dataclass
class Monitor:
    holdout: torch.Tensor  # indices into the train split
    classifier: nn.Module | None  # None when the data has a single class
    fixed_noise: torch.Tensor

    @classmethod
    def create(cls, images: torch.Tensor, labels: torch.Tensor, n_classes: int, latent_dim: int, seed: int, center: float) -> "Monitor":
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(images.shape[0], generator=gen)
        holdout = order[: min(HOLDOUT, images.shape[0] // 5 or 1)]
        rest = order[holdout.shape[0]:]
        classifier = None
        if n_classes >= 2 and rest.numel() > 0:
            classifier = train_classifier(to_model_input(images[rest]), labels[rest].to(images.device), n_classes, seed=seed)
        noise = torch.randn(64, latent_dim, generator=gen) + center
        return cls(holdout=holdout, classifier=classifier, fixed_noise=noise)

    def state(self) -> dict:
        return {"holdout": self.holdout, "fixed_noise": self.fixed_noise,
                "classifier": self.classifier.state_dict() if self.classifier is not None else None,
                "n_classes": self.classifier[-1].out_features if self.classifier is not None else 0}

    @classmethod
    def from_state(cls, state: dict, channels: int) -> "Monitor":
        classifier = None
        if state["classifier"] is not None:
            classifier = small_cnn(channels, state["n_classes"])
            classifier.load_state_dict(state["classifier"])
            classifier.eval()
        return cls(holdout=state["holdout"], classifier=classifier, fixed_noise=state["fixed_noise"])

    def save(self, path: Path) -> None:
        checkpoint.save(path, self.state())

    @torch.no_grad()
    def measure(self, model: Model, images: torch.Tensor, samples_dir: Path, epoch: int) -> dict[str, float | None]:
        """Fidelity and error on the held-out batch, plus the epoch's two grids; nets left in train mode."""
        generator = model.nets.sampler()  # the G augment will use
        nets = [model.nets.encoder, generator]
        for net in nets:
            net.eval()
        try:
            device = next(generator.parameters()).device
            x = to_model_input(images[self.holdout.to(images.device)]).to(device)
            x_rec = generator(model.encode(x))
            fidelity = None
            if self.classifier is not None:
                self.classifier.to(device)
                fidelity = label_fidelity(self.classifier, x, x_rec)
            paths = grid_paths(samples_dir, epoch)
            pairs_grid(x[:GRID], x_rec[:GRID], paths["recon"])
            save_grid(generator(self.fixed_noise.to(device)), paths["gauss"])
            if model.prior is not None:  # the same draws every epoch
                z = model.sample_prior(len(self.fixed_noise), torch.Generator().manual_seed(0))
                save_grid(generator(z.to(device)), paths["prior"])
        finally:
            for net in nets:
                net.train()
        return {"fidelity": fidelity, "recon_error": pixel_distance(x, x_rec).mean().item()}
