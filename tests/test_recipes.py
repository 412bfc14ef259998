"""Recipes: every built-in one parses and builds; strict keys; overrides; shape errors name the layer."""

from importlib import resources

import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.model import nets, recipes

THESIS = {"mnist-thesis": (32, 1, 64), "svhn-thesis": (32, 3, 128), "cifar10-thesis": (32, 3, 128),
          "imagenet32-thesis": (32, 3, 128), "celeba-crop64-thesis": (64, 3, 64), "celeba64-thesis": (64, 3, 128),
          "cartoon64-thesis": (64, 3, 128)}


def test_every_thesis_table_has_a_recipe():
    assert set(THESIS) <= set(recipes.builtin_names())
    assert {"mnist-cpu", "tiny8", "tiny16"} <= set(recipes.builtin_names())


@pytest.mark.parametrize("name", sorted(THESIS))
def test_thesis_recipes_build_with_their_table_shapes(name):
    r = recipes.load(name)
    size, channels, latent = THESIS[name]
    assert (r.image.size, r.image.channels, r.latent.dim) == (size, channels, latent)
    assert r.train.lr == 1e-3 and r.train.betas == (0.9, 0.99)  # §4.1.1
    assert r.train.recon_weight == 0 and r.train.latent_cycle_weight == 0  # faithful: no extras
    assert r.fixes, "every thesis table needed at least one fix, and the recipe says which"
    built = nets.build(r)
    with torch.no_grad():
        z = torch.randn(2, latent)
        x = built.generator.eval()(z)
        assert x.shape == (2, channels, size, size)
        assert built.encoder.eval()(x).shape == (2, latent)
        assert built.d1.eval()(x).shape[1] in (1, 2)
        assert built.d2.eval()(x, z).shape[1] in (1, 2)


def test_round_trip_through_dict():
    for name in ("cifar10-thesis", "mnist-cpu-aae16", "mnist-cpu"):  # without and with a latent discriminator; a mixture prior
        r = recipes.load(name)
        assert recipes.parse(r.to_dict(), "copy") == r


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    text = (resources.files("datagen.builtin_recipes") / "tiny8.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("kl_weight", "kl_wieght"))
    with pytest.raises(DatagenError, match="unknown key 'kl_wieght'.*kl_weight"):
        recipes.load(str(bad))


def test_shape_mismatch_names_the_layer(tmp_path):
    text = (resources.files("datagen.builtin_recipes") / "tiny8.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("reshape = [16, 2, 2]", "reshape = [16, 4, 4]"))
    with pytest.raises(DatagenError, match=r"generator\[1\] \(reshape"):
        nets.build(recipes.load(str(bad)))
    bad.write_text(text.replace("{ deconv = 1, kernel = 3, stride = 2", "{ deconv = 1, kernel = 3, stride = 1"))
    with pytest.raises(DatagenError, match=r"generator ends in \(1, 4, 4\).*generator\[3\]"):
        nets.build(recipes.load(str(bad)))


def test_overrides():
    r = recipes.apply_overrides(recipes.load("tiny8"), ["train.epochs=7", "model=bigan", "latent.center=0.5", "train.betas=[0.5, 0.999]"])
    assert (r.train.epochs, r.model, r.latent.center, r.train.betas) == (7, "bigan", 0.5, (0.5, 0.999))
    assert nets.build(r).d1 is None  # BiGAN has only the pair discriminator
    with pytest.raises(DatagenError, match="unknown recipe key 'train.epoch'.*train.epochs"):
        recipes.apply_overrides(r, ["train.epoch=3"])
    with pytest.raises(DatagenError, match="model must be one of"):
        recipes.apply_overrides(r, ["model=vae"])
    with pytest.raises(DatagenError, match="layer lists cannot be set"):
        recipes.apply_overrides(r, ["generator=1"])


def test_unknown_recipe_name_suggests():
    with pytest.raises(DatagenError, match="did you mean 'mnist-cpu'"):
        recipes.load("mnist-cp")
    with pytest.raises(DatagenError, match="recipe file not found"):
        recipes.load("../builtin_recipes/tiny8")  # a path is a path: never joined to the built-in folder
    with pytest.raises(DatagenError, match="unknown recipe"):
        recipes.load("Tiny8")


def test_a_folder_named_like_a_recipe_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    monkeypatch.chdir(tmp_path)
    assert recipes.load("mnist").name == "mnist"


@pytest.mark.parametrize(("setting", "message"), [
    ("train.epochs=abc", "whole number"), ("train.betas=1", "two numbers"), ("train.batch_size=2.5", "whole number"),
    ("latent.center=x", "must be a number"), ("latent.radius=0", "radius > 0"), ("train.lr=0", "lr > 0"),
    ("train.recon_weight=-1", ">= 0"), ("image.crop=0", "crop > 0")])
def test_wrong_values_are_named(setting, message):
    with pytest.raises(DatagenError, match=message):
        recipes.apply_overrides(recipes.load("tiny8"), [setting])


def test_layer_values_are_typed(tmp_path):
    text = (resources.files("datagen.builtin_recipes") / "tiny8.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("{ fc = 64, bn = true,", '{ fc = 64, bn = "no",'))
    with pytest.raises(DatagenError, match=r"generator\[0\]: bn must be true or false"):
        recipes.load(str(bad))


def test_recipes_command_lists_every_recipe_with_parameter_counts(cli):
    done = cli("recipes")
    assert done.returncode == 0, done.stderr
    for name in recipes.builtin_names():
        assert name in done.stdout
    assert "1,881" in done.stdout  # tiny8 G: fc 8x64 + bn 128, deconv 16x8x3x3 + bn 16, deconv 8x1x3x3 + bias 1
