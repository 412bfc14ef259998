"""The generator's additions (latent adversary, MMD, weight average) and what augment records per image
(label spreading, label confidence, the latent code and noise that re-create each image)."""

import json
from collections import Counter
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.data.pixels import to_uint8
from datagen.generate import augment as aug
from datagen.generate.pseudo import spread_labels
from datagen.model import checkpoint, nets, recipes
from datagen.model.latent import Model, project
from datagen.model.objectives import latent_mmd
from datagen.train import rundir


def _on_sphere(z):
    return project(z, 0.0, z.shape[1] ** 0.5, origin=0.0)


def test_mmd_is_near_zero_for_the_prior_itself_and_grows_for_codes_that_miss_it():
    gen = torch.Generator().manual_seed(0)
    prior = lambda: _on_sphere(torch.randn(256, 16, generator=gen))
    same = latent_mmd(prior(), prior()).item()
    crowded = prior() * 0.1 + torch.tensor([4.0] + [0.0] * 15)  # codes bunched on one side of the sphere
    missing = latent_mmd(_on_sphere(crowded), prior()).item()
    assert abs(same) < 0.02 and missing > 20 * max(abs(same), 1e-3)


@pytest.mark.parametrize("setting, message", [
    (["train.latent_adversary_weight=1"], "needs a latent discriminator"),
    (["train.ema_decay=1"], "ema_decay must be in"),
    (["train.latent_mmd_weight=-1"], "must be >= 0"),
    (["model=autoencoder", "train.ema_decay=0.9"], "the autoencoder"),
    (["train.spectral_norm=1"], "must be true or false"),
    (["train.feature_recon_weight=-1"], "must be >= 0"),
    (["model=bigan", "train.feature_recon_weight=1"], "only model = \"selfexgan\" has D1"),
])
def test_bad_generator_settings_are_named(setting, message, tmp_path):
    raw = recipes.load("tiny8").to_dict()
    raw.pop("dz")  # a recipe of its own without a latent discriminator
    path = tmp_path / "r.toml"
    path.write_text(_toml(raw))
    with pytest.raises(DatagenError, match=message):
        recipes.apply_overrides(recipes.load(str(path)), setting)


def _toml(raw):
    """Just enough TOML for a recipe dict: scalars, lists and inline tables."""
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)
    return "\n".join(f"{k} = {value(v)}" for k, v in raw.items()) + "\n"


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_prior_sample_weight_scales_d1s_term_for_prior_samples(weight):
    from datagen.model.objectives import _selfexgan_forward, bce, selfexgan_d_loss

    r = recipes.apply_overrides(recipes.load("tiny8"), [f"train.prior_sample_weight={weight}"])
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    x, z_n = torch.rand(6, 1, 8, 8) * 2 - 1, model.gaussian(6)
    with torch.no_grad():
        f = _selfexgan_forward(model, x, z_n)
        got = selfexgan_d_loss(model, x, f, z_n)["d1"]
        d1 = model.nets.d1(torch.cat([x, f["x_hat"], f["x_n"]] if weight else [x, f["x_hat"]]))
        fakes = bce(d1[6:12], 0.0) + weight * (bce(d1[12:], 0.0) if weight else 0)
        assert torch.allclose(got, bce(d1[:6], 1.0) + fakes / (1 + weight))


def test_feature_recon_adds_d1s_feature_distance_between_images_and_reconstructions():
    from datagen.model.objectives import _selfexgan_forward, selfexgan_eg_loss

    torch.manual_seed(0)
    plain = recipes.load("tiny8")
    weighted = recipes.apply_overrides(plain, ["train.feature_recon_weight=3"])
    built = nets.build(weighted)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    model = Model(recipe=weighted, nets=built)
    z_n = model.gaussian(6)
    with torch.no_grad():
        f = _selfexgan_forward(model, x, z_n)
        got = selfexgan_eg_loss(model, x, f, z_n)
        without = selfexgan_eg_loss(Model(recipe=plain, nets=built), x, f, z_n)
        perfect = selfexgan_eg_loss(model, x, {**f, "x_hat": x.clone()}, z_n)["feature_recon"]
    # D1 run layer by layer gives the same adversarial term as D1 called whole
    assert torch.allclose(got["adv"], without["adv"])
    assert got["feature_recon"] > 0.01 and perfect.abs() < 1e-6
    assert torch.allclose(got["loss"], without["loss"] + 3 * got["feature_recon"])


def test_a_run_that_keeps_an_average_renders_with_it():
    r = recipes.apply_overrides(recipes.load("tiny8"), ["train.ema_decay=0.5"])
    torch.manual_seed(0)
    built = nets.build(r)
    built.generator_ema.update_parameters(built.generator)
    with torch.no_grad():  # G moves on; the average stays behind
        for p in built.generator.parameters():
            p.add_(1.0)
    state = {"recipe": r.to_dict(), "nets": {name: net.state_dict() for name, net in built.items()}}
    model = checkpoint.load_model(state)
    z = torch.randn(4, 8)
    built.generator_ema.module.eval()
    with torch.no_grad():
        assert torch.equal(model.decode(z), built.generator_ema.module(z))


def test_labels_spread_along_the_codes_and_only_seeds_of_the_label_own_them():
    gen = torch.Generator().manual_seed(0)
    model = SimpleNamespace(recipe=SimpleNamespace(latent=SimpleNamespace(center=0.0)))
    centres = torch.eye(8)[:2] * 3  # two classes, far apart on the sphere
    z_seeds = torch.cat([centres[0] + 0.1 * torch.randn(3, 8, generator=gen), centres[1] + 0.1 * torch.randn(3, 8, generator=gen)])
    truth = torch.arange(40) % 2
    z_rest = centres[truth] + 0.1 * torch.randn(40, 8, generator=gen)
    labels, confidence, owner = spread_labels(model, z_seeds, torch.tensor([0, 0, 0, 1, 1, 1]), z_rest, 2, neighbours=5)
    assert torch.equal(labels, truth)
    assert ((confidence > 0.5) & (confidence <= 1)).all()
    assert torch.equal(owner // 3, labels)  # seeds 0-2 are class 0, 3-5 class 1


def _opts(run, out, **kw):
    base = dict(run=run, per_class=6, seeds_per_class=2, filter=False, out=out, batch_size=5, progress=False,
                include_unlabeled=False)
    base.update(kw)
    return aug.AugmentOptions(**base)


def test_every_generated_image_can_be_recreated_from_its_recorded_code(run, tmp_path):
    aug.augment(_opts(run, tmp_path / "a.h5", include_seeds=True, noise=(0.3, 0.6)))
    with h5py.File(tmp_path / "a.h5") as f:
        images, real, latent = f["images"][:], f["real"][:], f["latent"][:]
        noise, confidence = f["noise"][:], f["label_confidence"][:]
        provenance = json.loads(f.attrs["provenance"])
    assert provenance["unlabeled"] and provenance["pseudo_labels"]["method"] == "label spreading"  # on by default
    assert sorted(set(noise[~real].tolist())) == pytest.approx([0.3, 0.6]) and (noise[real] == 0).all()
    assert (confidence[real] == 1).all() and ((confidence > 0) & (confidence <= 1)).all()
    model = checkpoint.load_model(checkpoint.load(rundir.checkpoint_of(run)))
    recreated = to_uint8(model.decode_all(torch.from_numpy(latent[~real]))).numpy()
    assert np.abs(recreated.astype(int) - images[~real].astype(int)).max() <= 1  # float rounding at most


def test_min_label_confidence_leaves_out_unsure_unlabeled_images(run, tmp_path):
    def distinct(path):
        with h5py.File(path) as f:
            return len({row.tobytes() for row in f["images"][:]}), f["label_confidence"][:]
    aug.augment(_opts(run, tmp_path / "all.h5", noise=(0.0,), per_class=30))
    aug.augment(_opts(run, tmp_path / "sure.h5", noise=(0.0,), per_class=30, min_label_confidence=1.0))
    grown_from_all, _ = distinct(tmp_path / "all.h5")
    grown_from_sure, confidence = distinct(tmp_path / "sure.h5")
    assert grown_from_all > 2 * 10 and grown_from_sure == 2 * 10  # only the seeds are certain
    assert (confidence == 1).all()


def test_imagefolder_records_the_same_details(run, tmp_path):
    aug.augment(_opts(run, tmp_path / "folder", fmt="imagefolder"))
    manifest = json.loads((tmp_path / "folder" / "manifest.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "folder" / "metadata.jsonl").read_text().splitlines()]
    assert manifest["latent_dim"] == 8 and len(rows) == 60
    assert Counter(row["label"] for row in rows) == {label: 6 for label in range(10)}
    assert all(len(row["latent"]) == 8 and 0 <= row["label_confidence"] <= 1 and row["noise"] >= 0 for row in rows)


def test_an_output_from_before_the_details_is_not_resumed_into(run, tmp_path):
    aug.augment(_opts(run, tmp_path / "old.h5", per_class=3))
    with h5py.File(tmp_path / "old.h5", "a") as f:
        del f["latent"], f["label_confidence"]
    with pytest.raises(DatagenError, match="older datagen.*--overwrite"):
        aug.augment(_opts(run, tmp_path / "old.h5", per_class=3, resume=True))


def test_the_default_filter_is_on_only_with_enough_seeds_per_class(run, tmp_path, monkeypatch):
    from helpers import judge_every_tenth

    judge_every_tenth(monkeypatch)  # accepts one candidate in ten, whatever the G
    few = aug.augment(_opts(run, tmp_path / "few.h5", filter=None, seeds_per_class=2, per_class=4))
    many = aug.augment(_opts(run, tmp_path / "many.h5", filter=None, seeds_per_class=10, per_class=4))
    assert few.rejection == [0.0] * 10  # 2 seeds per class: no filter
    assert all(r > 0.5 for r in many.rejection)  # 10 seeds per class: the filter judged every class
    with h5py.File(tmp_path / "many.h5") as f:
        assert json.loads(f.attrs["provenance"])["filter"] is True


def test_inspect_still_accepts_an_output_written_before_the_details(run, tmp_path):
    from datagen.store.inspect import inspect

    aug.augment(_opts(run, tmp_path / "old.h5", per_class=3))
    with h5py.File(tmp_path / "old.h5", "a") as f:
        del f["latent"], f["label_confidence"], f["noise"]
    summary = inspect(tmp_path / "old.h5")
    assert summary.complete and not summary.problems and summary.counts == [3] * 10
