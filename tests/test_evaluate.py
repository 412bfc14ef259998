"""`datagen evaluate`: the protocol's shape, repeatability, leak refusal and bad input."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.data.sources import load
from datagen.eval import downstream, protocol as ev, quality
from datagen.eval.defaults import ARMS
from datagen.model import checkpoint

# `run` (conftest): a private copy of the 1-epoch tiny8 digits run; evaluate may cache its reference classifier there.


def _opts(run, tmp_path, **kw):
    base = dict(run=run, labels_per_class=(3,), repeats=2, json_path=tmp_path / "e" / "evaluation.json",
                gan_per_class=6, steps=30, filter=False, progress=False)
    base.update(kw)
    return ev.EvaluateOptions(**base)


def test_every_arm_and_budget_is_reported_with_paired_gains(tiny_reference, tmp_path):
    run = shutil.copytree(tiny_reference, tmp_path / "run")  # its reference classifier fitted already (conftest)
    result = ev.evaluate(_opts(run, tmp_path, labels_per_class=(1, 3)))
    written = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert set(written) == {"results", "quality", "config"}
    rows = {(r["labels_per_class"], r["arm"]): r for r in written["results"]}
    assert set(rows) == {(k, arm) for k in (1, 3) for arm in ARMS}
    for (k, arm), row in rows.items():
        assert len(row["runs"]) == 2 and 0 <= row["mean"] <= 1 and row["std"] >= 0
        assert all(r["train_seeds"] + r["val_seeds"] == 10 * k for r in row["runs"])
        assert ("gain_over_real" in row) == (arm != "real")
    gain = rows[(3, "real+gan")]["gain_over_real"]
    diffs = [a["accuracy"] - b["accuracy"] for a, b in zip(rows[(3, "real+gan")]["runs"], rows[(3, "real")]["runs"])]
    assert gain["mean"] == pytest.approx(np.mean(diffs)) and gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
    q = written["quality"]
    assert 0 <= q["latent_1nn_accuracy"] <= 1 and q["recon_ratio"] > 0 and q["fid_reference_features"] >= 0
    assert 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 and q["reference_test_accuracy"] > 0.85
    assert result.paths["plot"].stat().st_size > 0 and "real+gan" in result.paths["markdown"].read_text()


def test_the_same_seeds_give_the_same_numbers(run, tmp_path):
    a = ev.evaluate(_opts(run, tmp_path / "a", quality=False, arms=("real", "real+gan+classic")))
    b = ev.evaluate(_opts(run, tmp_path / "b", quality=False, arms=("real", "real+gan+classic")))
    assert [r["runs"] for r in a.results] == [r["runs"] for r in b.results]


def test_gan_images_grow_only_from_the_budget_seeds(run, tmp_path):
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    train = load("digits", "train", size=8, channels=1)
    train_pos, _ = ev._draw_seeds(train.labels, 10, 2, seed=5)
    chosen = train.indices[train_pos]
    images, labels = ev._generate(_opts(run, tmp_path), run / "checkpoints" / "last.pt", chosen, 5, tmp_path)
    with h5py.File(tmp_path / f"gan-5-{len(chosen)}.h5") as f:
        assert set(f["seed_index"][:].tolist()) <= set(chosen.tolist())
    assert len(images) == 60 and state["dataset"]["source"] == "digits"


def test_a_run_trained_on_test_images_is_refused(run, tmp_path, cli):
    """A run that trained on every digits image (train and test split) but claims digits as its source.

    Its dataset record is built exactly as `datagen train` on that data writes it (the train split's fingerprint
    and per-image content hashes: test_train checks that training records these), on the tiny run's checkpoint,
    so no second run needs training."""
    everything = torch.cat([load("digits", s, size=8, channels=1).images for s in ("train", "test")])
    labels = torch.cat([load("digits", s, size=8, channels=1).labels for s in ("train", "test")])
    with h5py.File(tmp_path / "all.h5", "w") as f:
        f["images"], f["labels"] = everything.numpy(), labels.numpy()
    trained_on = load(str(tmp_path / "all.h5"), "train", size=8, channels=1)
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    state["dataset"] = {"source": "digits", "fingerprint": trained_on.fingerprint(), "image_hashes": trained_on.image_hashes()}
    checkpoint.save(run / "checkpoints" / "best.pt", state)
    refused = cli("evaluate", "--run", str(run), "--labels-per-class", "1", "--repeats", "1")
    assert refused.returncode == 2 and "test split" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    del state["dataset"]["image_hashes"]  # a run from before hashes were recorded: the fingerprint decides
    checkpoint.save(run / "checkpoints" / "best.pt", state)
    with pytest.raises(DatagenError, match="cannot prove"):
        ev.evaluate(_opts(run, tmp_path))


def test_the_leak_check_passes_a_run_trained_on_the_train_split_alone(run):
    """The other side of the refusal above: the tiny run's own record, by hashes and (without them) by fingerprint."""
    train, test = (load("digits", s, size=8, channels=1) for s in ("train", "test"))
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    ev.check_no_test_leak(state, train, test)
    del state["dataset"]["image_hashes"]
    ev.check_no_test_leak(state, train, test)


@pytest.mark.parametrize(("args", "message"), [
    (["--labels-per-class", "ten"], "--labels-per-class"), (["--arms", "real,magic"], "--arms"),
    (["--labels-per-class", "0"], "--labels-per-class")])
def test_bad_options_are_one_line(cli, tiny_run, args, message):
    done = cli("evaluate", "--run", str(tiny_run), *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_missing_run_is_one_line(cli, tmp_path):
    done = cli("evaluate", "--run", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no checkpoint" in done.stderr


def test_classic_augmentation_changes_images_but_not_their_form():
    images = torch.zeros(4, 8, 8, 1, dtype=torch.uint8)
    images[:, 2:6, 3:5] = 255
    torch.manual_seed(0)
    out = downstream._apply(downstream.classic_transform(1), images)
    assert out.shape == (4, 1, 8, 8) and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, downstream._apply(None, images))


def test_frechet_distance_matches_scipy_and_precision_recall_are_one_on_identical_sets():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(200, 8)) * 1.5 + 0.3
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert quality.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert quality.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    same = quality.precision_recall(a.astype(np.float32), a.astype(np.float32))
    assert same == {"precision": 1.0, "recall": 1.0}
    far = quality.precision_recall(a.astype(np.float32), (a + 100).astype(np.float32))
    assert far == {"precision": 0.0, "recall": 0.0}


def test_all_labels_is_a_budget_too(run, tmp_path):
    result = ev.evaluate(_opts(run, tmp_path, labels_per_class=(None,), repeats=1, arms=("real", "real+gan"),
                               quality=False, unlabeled=True))
    runs = [r["runs"][0] for r in result.results]
    assert [r["labels_per_class"] for r in result.results] == ["all", "all"]
    assert all(r["train_seeds"] + r["val_seeds"] == 1442 for r in runs)  # every digits train image
