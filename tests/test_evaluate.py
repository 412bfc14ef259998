"""`datagen evaluate`: the protocol's shape, repeatability, the arms without G, leak refusal and bad input."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.data.sources import load
from datagen.eval import downstream, protocol as ev, stats
from datagen.eval.defaults import ARMS
from datagen.generate.augment import AugmentOptions, augment
from datagen.model import checkpoint
from datagen.train import rundir

# `run` (conftest): a private copy of the 1-epoch tiny8 digits run; evaluate may cache its reference classifier there.
TINY = downstream.Recipe(steps=20, width=8)


def _opts(run, tmp_path, **kw):
    base = dict(runs=(run,), labels_per_class=(3,), repeats=2, json_path=tmp_path / "e" / "evaluation.json",
                gan_per_class=6, classifier=TINY, progress=False, device="cpu",
                filter=False)  # a 1-epoch tiny G gives augment's default filter nothing to accept
    base.update(kw)
    return ev.EvaluateOptions(**base)


def test_every_arm_and_budget_is_reported_with_paired_gains_and_the_quality_block(tiny_reference, tmp_path):
    run = shutil.copytree(tiny_reference, tmp_path / "run")  # its reference classifier fitted already (conftest)
    result = ev.evaluate(_opts(run, tmp_path, labels_per_class=(1, 3)))
    written = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert set(written) == {"results", "comparisons", "quality", "config"}
    rows = {(r["labels_per_class"], r["arm"]): r for r in written["results"]}
    assert set(rows) == {(k, arm) for k in (1, 3) for arm in ARMS}
    train_size = len(load("digits", "train", size=8, channels=1))
    for (k, arm), row in rows.items():
        assert len(row["runs"]) == 2 and 0 <= row["worst"] <= row["mean"] <= 1 and row["std"] >= 0
        assert all(r["labeled"] == 10 * k and r["labeled"] + r["unlabeled"] == train_size for r in row["runs"])
        assert row["worst"] == min(r["accuracy"] for r in row["runs"])
        assert ("pseudo_label_accuracy" in row) == ("pseudo" in arm)
    pairs = {(c["labels_per_class"], c["arm"], c["over"]): c for c in written["comparisons"]}
    for k in (1, 3):
        assert {(k, "real+gan", "real+pseudo"), (k, "real+gan+classic", "real+pseudo+classic"),
                (k, "real+gan+classic", "real+classic"), (k, "real+classic", "real")} <= set(pairs)
    gain = pairs[(3, "real+gan", "real+pseudo")]
    diffs = [a["accuracy"] - b["accuracy"] for a, b in zip(rows[(3, "real+gan")]["runs"], rows[(3, "real+pseudo")]["runs"])]
    assert gain["mean"] == pytest.approx(np.mean(diffs)) and gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
    assert all(c["p_holm"] is None or c["p_holm"] >= c["p_value"] for c in written["comparisons"])
    config = written["config"]
    assert config["runs"][0]["checkpoint"].endswith("last.pt") and "without any label" in config["runs"][0]["checkpoint_chosen_by"]
    assert config["split"] == "test" and config["classifier"]["selection"].startswith("final state")
    q = written["quality"]
    per = q["runs"]["run"]
    for block in (per["prior_samples"], per["neighbours"], q["floor_real_train_vs_split"]):
        assert {"fid", "kid_mean", "precision", "recall", "density", "coverage"} <= set(block) and block["fid"] >= 0
    assert per["prior_samples"]["fid"] > q["floor_real_train_vs_split"]["fid"]  # a 1-epoch G is far from real data
    assert per["prior"] == "mixture" and per["gaussian_samples"]["fid"] != per["prior_samples"]["fid"]  # tiny8 fits one
    assert 0 <= per["latent_1nn_accuracy"] <= 1 and per["recon_ratio"] > 0 and q["reference_accuracy"] > 0.85
    assert result.paths["plot"].stat().st_size > 0 and "real+pseudo" in result.paths["markdown"].read_text()


def test_the_same_seeds_give_the_same_numbers(run, tmp_path):
    a = ev.evaluate(_opts(run, tmp_path / "a", quality=False, arms=("real", "real+gan+classic")))
    b = ev.evaluate(_opts(run, tmp_path / "b", quality=False, arms=("real", "real+gan+classic")))
    assert [r["runs"] for r in a.results] == [r["runs"] for r in b.results]


def _repeat_data(run, tmp_path, k=2, seed=5):
    """One repeat's labeled seeds and unlabeled rest, and what the run adds to them."""
    train = load("digits", "train", size=8, channels=1)
    picked = [w.sort().values for w in ev.draw_per_class(train.labels, 10, k, seed)]
    chosen = torch.cat(picked)
    rest = torch.tensor(sorted(set(range(len(train))) - set(chosen.tolist())))
    runs = ev._open_runs(_opts(run, tmp_path), torch.device("cpu"))
    return train, picked, chosen, rest, ev._extra_data(_opts(run, tmp_path), runs[0], train, picked, chosen, rest, seed)


def test_in_memory_neighbours_are_exactly_augments_output(run, tmp_path):
    train, _, chosen, rest, extra = _repeat_data(run, tmp_path)
    out = tmp_path / "grown.h5"
    augment(AugmentOptions(run=run, per_class=6, seed_indices=tuple(train.indices[chosen].tolist()), out=out,
                           unlabeled=True, unlabeled_indices=tuple(train.indices[rest].tolist()), filter=False, seed=5,
                           include_unlabeled=False, progress=False))
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["images"][:], extra["generated"][0].numpy())
        assert np.array_equal(f["labels"][:], extra["generated"][1].numpy())
        assert set(f["seed_index"][:].tolist()) <= set(train.indices[chosen].tolist())


def test_the_pseudo_images_are_augments_included_unlabeled_images(run, tmp_path):
    """The whole-output arm trains on what `augment --include-unlabeled` writes: the same images with the same labels."""
    train, _, chosen, rest, extra = _repeat_data(run, tmp_path)
    out = tmp_path / "whole.h5"
    augment(AugmentOptions(run=run, per_class=6, seed_indices=tuple(train.indices[chosen].tolist()), out=out,
                           unlabeled_indices=tuple(train.indices[rest].tolist()), include_unlabeled=True, filter=False,
                           seed=5, progress=False))
    with h5py.File(out, "r") as f:
        real = f["real"][:]
        written = sorted(zip(f["seed_index"][:][real].tolist(), f["labels"][:][real].tolist()))
    images, labels = extra["pseudo"]
    assert written == sorted(zip(train.indices[rest].tolist(), labels.tolist()))
    assert torch.equal(images, train.images[rest])


def test_the_pseudo_arm_is_the_unlabeled_images_with_their_nearest_seed_label(run, tmp_path):
    """real+pseudo: the same images the gan arms grow from, labelled as augment labels them, and nothing from dev/test."""
    train, _, chosen, rest, extra = _repeat_data(run, tmp_path)
    images, labels = extra["pseudo"]
    assert torch.equal(images, train.images[rest]) and len(labels) == len(rest)
    assert set(labels.tolist()) <= set(train.labels[chosen].tolist())
    assert extra["pseudo_label_accuracy"] == pytest.approx((labels == train.labels[rest]).float().mean().item())
    held_out = torch.cat([load("digits", s, size=8, channels=1).indices for s in ("dev", "test")])
    assert not torch.isin(train.indices[rest], held_out).any()


def test_the_whole_output_arm_trains_on_the_pseudo_labelled_images_and_the_neighbours_together(run, tmp_path, monkeypatch):
    """real+pseudo+gan: the extra half of each batch draws from both, exactly those of its two twins."""
    train, _, chosen, rest, extra = _repeat_data(run, tmp_path)
    seen = {}
    monkeypatch.setattr(ev.downstream, "train", lambda labeled, *a, **kw: seen.setdefault("set", labeled))
    monkeypatch.setattr(ev.downstream, "accuracy", lambda *a: 0.0)
    ev._fit_arm(_opts(run, tmp_path), "real+pseudo+gan", train, chosen, rest, extra, 10, 5, train, torch.device("cpu"))
    (pseudo_images, pseudo_labels), (gan_images, gan_labels) = extra["pseudo"], extra["generated"]
    assert torch.equal(seen["set"].extra_images, torch.cat([pseudo_images, gan_images]))
    assert torch.equal(seen["set"].extra_labels, torch.cat([pseudo_labels, gan_labels]))


def test_several_runs_pool_repeats_and_report_their_spread(run, tmp_path):
    twin = shutil.copytree(run, tmp_path / "twin")
    result = ev.evaluate(_opts(run, tmp_path, runs=(run, twin), quality=False, arms=("real", "real+pseudo", "real+gan")))
    rows = {r["arm"]: r for r in result.results}
    assert all(len(r["runs"]) == 4 and set(r["run_means"]) == {"tiny-run", "twin"} for r in rows.values())
    assert rows["real+gan"]["between_runs"]["std"] == pytest.approx(0)  # the same weights twice: no spread
    gain = next(c for c in result.comparisons if c["arm"] == "real+gan" and c["over"] == "real")
    assert gain["pairs"] == 2  # one pair per repeat: the shared real arm is not counted once per run
    assert result.config["runs"][1]["checkpoint"].endswith("twin/checkpoints/last.pt")


def test_runs_of_different_data_are_not_pooled(run, tmp_path):
    other = shutil.copytree(run, tmp_path / "other")
    state = checkpoint.load(other / "checkpoints" / "last.pt")
    state["dataset"]["source"] = "mnist-5k"
    checkpoint.save(other / "checkpoints" / "last.pt", state)
    with pytest.raises(DatagenError, match="pool only trainings"):
        ev.evaluate(_opts(run, tmp_path, runs=(run, other)))


def test_a_run_directory_is_judged_by_its_last_checkpoint_never_a_label_chosen_one(run, tmp_path):
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    state["nets"]["generator"] = {k: torch.zeros_like(v) for k, v in state["nets"]["generator"].items()}
    checkpoint.save(run / "checkpoints" / "best.pt", state)  # as runs before this version wrote it
    assert rundir.checkpoint_of(run) == run / "checkpoints" / "last.pt"
    assert "without any label" in rundir.chosen_by(run) and "given" in rundir.chosen_by(run / "checkpoints" / "best.pt")


def test_a_run_trained_on_the_split_measured_is_refused(run, tmp_path, cli):
    """A run that trained on every digits image but claims digits as its source: refused on test and on dev.

    Its dataset record is built exactly as `datagen train` on that data writes it (fingerprint and per-image
    content hashes), on the tiny run's checkpoint, so no second run needs training."""
    splits = [load("digits", s, size=8, channels=1) for s in ("train", "dev", "test")]
    with h5py.File(tmp_path / "all.h5", "w") as f:
        f["images"] = torch.cat([s.images for s in splits]).numpy()
        f["labels"] = torch.cat([s.labels for s in splits]).numpy()
    trained_on = load(str(tmp_path / "all.h5"), "train", size=8, channels=1)
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    state["dataset"] = {"source": "digits", "fingerprint": trained_on.fingerprint(), "image_hashes": trained_on.image_hashes()}
    checkpoint.save(run / "checkpoints" / "last.pt", state)
    for split in ("test", "dev"):
        refused = cli("evaluate", "--run", str(run), "--labels-per-class", "1", "--repeats", "1", "--split", split)
        assert refused.returncode == 2 and f"{split} split" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    del state["dataset"]["image_hashes"]  # a run from before hashes were recorded: the fingerprint decides
    checkpoint.save(run / "checkpoints" / "last.pt", state)
    with pytest.raises(DatagenError, match="cannot prove"):
        ev.evaluate(_opts(run, tmp_path))


def test_the_leak_check_passes_a_run_trained_on_the_train_split_alone(run):
    train, dev, test = (load("digits", s, size=8, channels=1) for s in ("train", "dev", "test"))
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    for target in (dev, test):
        ev.check_no_leak(state, train, target)
    del state["dataset"]["image_hashes"]
    ev.check_no_leak(state, train, test)


def test_dev_is_measured_on_the_dev_split(run, tmp_path):
    result = ev.evaluate(_opts(run, tmp_path, split="dev", arms=("real",), quality=False, repeats=1, json_path=None))
    assert result.config["split"] == "dev" and result.config["split_images"] == len(load("digits", "dev", size=8, channels=1))
    assert result.paths["json"] == run / "evaluation" / "evaluation-dev.json"
    assert "dev split" in result.paths["markdown"].read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--labels-per-class", "ten"], "--labels-per-class"), (["--arms", "real,magic"], "--arms"),
    (["--labels-per-class", "0"], "--labels-per-class"), (["--split", "valid"], "--split")])
def test_bad_options_are_one_line(cli, tiny_run, args, message):
    done = cli("evaluate", "--run", str(tiny_run), *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_missing_run_is_one_line(cli, tmp_path):
    done = cli("evaluate", "--run", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no checkpoint" in done.stderr


def test_classic_augmentation_moves_each_image_on_its_own_draw():
    images = torch.zeros(4, 8, 8, 1, dtype=torch.uint8)
    images[:, 2:6, 3:5] = 255
    out = downstream.classic(images, torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 8, 8) and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, downstream.to_model_input(images))
    assert not torch.equal(out[0], out[1])  # per image, not one draw for the batch
    assert out[:, :, 0, 0].eq(-1).all()  # uncovered corners are background, not grey
    assert torch.equal(out, downstream.classic(images, torch.Generator().manual_seed(0)))


def test_with_no_movement_the_affine_is_the_identity(monkeypatch):
    monkeypatch.setattr(downstream, "DEGREES", 0.0)
    monkeypatch.setattr(downstream, "TRANSLATE", 0.0)
    monkeypatch.setattr(downstream, "SCALE", (1.0, 1.0))
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert torch.allclose(downstream.random_affine(x, torch.Generator().manual_seed(1)), x, atol=1e-5)


def test_the_classifier_is_its_final_state_and_repeatable():
    train = load("digits", "train", size=8, channels=1)
    data = downstream.TrainingSet(train.images[:100], train.labels[:100])
    a = downstream.train(data, 10, classic_aug=True, seed=3, recipe=TINY)
    b = downstream.train(data, 10, classic_aug=True, seed=3, recipe=TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training


def test_holm_adjusts_step_down_and_stays_monotone():
    assert stats.holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert stats.holm([0.2, 0.9]) == pytest.approx([0.4, 0.9]) and stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1


def test_all_labels_is_a_budget_too(run, tmp_path):
    result = ev.evaluate(_opts(run, tmp_path, labels_per_class=(None,), repeats=1, arms=("real", "real+gan"),
                               quality=False))
    runs = [r["runs"][0] for r in result.results]
    assert [r["labels_per_class"] for r in result.results] == ["all", "all"]
    assert all(r["labeled"] == len(load("digits", "train", size=8, channels=1)) and r["unlabeled"] == 0 for r in runs)
