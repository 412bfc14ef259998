"""`datagen augment`: exactly N per class, seeds subset, filter cap, resume, formats, bad input."""

import h5py
import numpy as np
import pytest
import torch
from helpers import png_folder
from torchvision.datasets import ImageFolder

from datagen.common.errors import DatagenError
from datagen.data.pixels import to_model_input
from datagen.data.sources import load
from datagen.generate import augment as aug, filter as filtering
from datagen.generate.neighbours import pick_seeds
from datagen.store.dataset import SyntheticDataset
from datagen.store.inspect import inspect
from datagen.train import rundir

# `run` (conftest): a private copy of the 1-epoch tiny8 digits run, so filters/ and previews may land in it.


def _opts(run, out, **kw):
    base = dict(run=run, per_class=7, seeds_per_class=3, filter=False, out=out, batch_size=5, progress=False,
                include_unlabeled=False)  # generated rows only, unless a test asks for the real ones
    base.update(kw)
    return aug.AugmentOptions(**base)


def test_hdf5_has_exactly_n_per_class_from_the_chosen_seeds(run, tmp_path):
    result = aug.augment(_opts(run, tmp_path / "a.h5", include_seeds=True))
    assert result.counts == [10] * 10  # 7 generated + 3 real seeds per class
    with h5py.File(tmp_path / "a.h5") as f:
        labels, real, seed_index = f["labels"][:], f["real"][:], f["seed_index"][:]
        assert f["images"].dtype == np.uint8 and f["images"].shape[1:] == (8, 8, 1)
    chosen = set(inspect(tmp_path / "a.h5").provenance["seed_indices"])
    assert len(chosen) == 30 and set(seed_index.tolist()) <= chosen
    assert np.bincount(labels[~real]).tolist() == [7] * 10 and real.sum() == 30
    summary = inspect(tmp_path / "a.h5")
    assert summary.complete and not summary.problems
    assert len(result.previews) == 10 and all(p.exists() for p in result.previews)


def test_imagefolder_is_read_by_torchvision(run, tmp_path):
    aug.augment(_opts(run, tmp_path / "folder", fmt="imagefolder"))
    folder = ImageFolder(str(tmp_path / "folder"))
    assert np.bincount(folder.targets).tolist() == [7] * 10


def test_same_seed_same_output_and_the_seed_subset_is_recorded(run, tmp_path):
    aug.augment(_opts(run, tmp_path / "a.h5"))
    aug.augment(_opts(run, tmp_path / "b.h5"))
    aug.augment(_opts(run, tmp_path / "c.h5", seed=1))
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b, h5py.File(tmp_path / "c.h5") as c:
        assert np.array_equal(a["images"][:], b["images"][:])
        assert not np.array_equal(a["images"][:], c["images"][:])


@pytest.mark.parametrize("real_rows", [{}, {"include_seeds": True, "include_unlabeled": True}])
def test_resume_after_an_interruption_gives_exactly_n(run, tmp_path, monkeypatch, real_rows):
    original = aug.candidates
    calls = {"n": 0}

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(aug, "candidates", dying)
    with pytest.raises(KeyboardInterrupt):
        aug.augment(_opts(run, tmp_path / "r.h5", **real_rows))
    assert not inspect(tmp_path / "r.h5").complete
    monkeypatch.setattr(aug, "candidates", original)
    with pytest.raises(DatagenError, match="--resume"):
        aug.augment(_opts(run, tmp_path / "r.h5", **real_rows))
    aug.augment(_opts(run, tmp_path / "r.h5", resume=True, **real_rows))
    aug.augment(_opts(run, tmp_path / "straight.h5", **real_rows))
    with h5py.File(tmp_path / "r.h5") as r, h5py.File(tmp_path / "straight.h5") as s:
        assert np.bincount(r["labels"][:][~r["real"][:]]).tolist() == [7] * 10
        assert np.array_equal(r["images"][:], s["images"][:])  # the resumed output is the uninterrupted one


def test_a_filter_that_rejects_everything_stops_with_a_hint(run, tmp_path):
    with pytest.raises(DatagenError, match="--min-confidence"):
        aug.augment(_opts(run, tmp_path / "f.h5", filter=True, min_confidence=1.0, max_candidates=2))
    assert not inspect(tmp_path / "f.h5").complete


@pytest.mark.parametrize(("change", "message"), [
    ({"per_class": 0}, "--per-class"), ({"seeds_per_class": 0}, "--seeds-per-class"), ({"noise": (-1.0,)}, "--noise"),
    ({"min_confidence": 2.0}, "--min-confidence"), ({"mix": 1.5}, "--mix")])
def test_bad_options(run, tmp_path, change, message):
    with pytest.raises(DatagenError, match=message):
        aug.augment(_opts(run, tmp_path / "x.h5", **change))
    assert not (tmp_path / "x.h5").exists()


def test_bad_input_from_the_command_line(cli, run, tmp_path):
    missing = cli("augment", str(tmp_path / "nowhere"), "--per-class", "5")
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr
    noise = cli("augment", str(run), "--per-class", "5", "--noise", "a,b")
    assert noise.returncode == 2 and "--noise" in noise.stderr
    done = cli("augment", str(run), "--per-class", "3", "--no-filter", "--seeds-per-class", "2", "--out", "o.h5")
    assert done.returncode == 0, done.stderr
    assert cli("inspect", "o.h5").returncode == 0


def test_python_api(run, tmp_path):
    import datagen

    result = datagen.augment(run, per_class=2, seeds_per_class=1, filter=False, out=tmp_path / "api.h5", progress=False)
    assert isinstance(result, aug.AugmentResult)
    assert [count - real for count, real in zip(result.counts, result.real)] == [2] * 10 and inspect(result.path).complete
    assert 0.9 * (len(load("digits", "train", size=8, channels=1)) - 10) < sum(result.real)  # the unlabeled images, by default


@pytest.mark.parametrize("shape", [(8, 8, 3), (12, 12), (5, 5)])
def test_seeds_of_another_size_or_colour_are_converted_when_safe(run, tmp_path, shape):
    seeds = png_folder(tmp_path / "seeds", {"a": 3, "b": 3}, shape)
    result = aug.augment(_opts(run, tmp_path / "s.h5", seeds=str(seeds), seeds_per_class=None, per_class=3))
    assert result.counts == [3, 3]
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["images"].shape == (6, 8, 8, 1)  # grey 8x8, as the tiny8 recipe takes


@pytest.mark.parametrize(("shape", "message"), [((8, 12), "square"), ((3, 3), "too small")])
def test_seeds_that_cannot_be_converted_safely_are_refused(cli, run, tmp_path, shape, message):
    seeds = png_folder(tmp_path / "seeds", {"a": 3, "b": 3}, shape)
    result = cli("augment", str(run), "--per-class", "3", "--seeds", str(seeds), "--out", "x.h5")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.h5").exists()


def test_a_class_with_no_seeds_is_named(tmp_path):
    with pytest.raises(DatagenError, match="class 'b' has no seed images"):
        pick_seeds(torch.tensor([0, 0, 2]), 3, None, 0, ("a", "b", "c"))


def test_an_unwritable_out_is_one_line_and_leaves_nothing(cli, run, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    result = cli("augment", str(run), "--per-class", "3", "--no-filter", "--out", str(tmp_path / "file" / "o.h5"))
    assert result.returncode == 2 and "choose a writable --out" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_kill_9_then_resume_gives_exactly_n_per_class(cli, run, tmp_path):
    """The command itself, killed with SIGKILL mid-output (a real process), then resumed (issue 3's acceptance check)."""
    import signal

    from helpers import augment_in_background

    proc, args = augment_in_background(run, tmp_path / "k.h5", tmp_path, started_bytes=400_000)
    out = tmp_path / "k.h5"
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    interrupted = inspect(out)
    assert not interrupted.complete and 0 < sum(interrupted.counts) < 30000
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = inspect(out)
    assert summary.complete and not summary.problems and summary.counts == [3000] * 10
    with h5py.File(out) as f:
        assert f.attrs["complete"] and np.bincount(f["labels"][:]).tolist() == [3000] * 10


def test_mix_blends_seeds_and_still_gives_exactly_n(run, tmp_path):
    plain = aug.augment(_opts(run, tmp_path / "plain.h5"))
    mixed = aug.augment(_opts(run, tmp_path / "mixed.h5", mix=1.0))
    assert plain.counts == mixed.counts == [7] * 10
    with h5py.File(tmp_path / "plain.h5") as a, h5py.File(tmp_path / "mixed.h5") as b:
        assert not np.array_equal(a["images"][:], b["images"][:])
        assert inspect(tmp_path / "mixed.h5").provenance["mix"] == 1.0


def test_unlabeled_images_carry_only_seed_labels(run, tmp_path):
    result = aug.augment(_opts(run, tmp_path / "u.h5", unlabeled=True, seeds_per_class=2, per_class=30, noise=(0.0,)))
    assert result.counts == [30] * 10
    summary = inspect(tmp_path / "u.h5")
    seeds = set(summary.provenance["seed_indices"])
    with h5py.File(tmp_path / "u.h5") as f:
        labels, grown = f["labels"][:], f["seed_index"][:]
    assert len(seeds) == 20 and set(grown.tolist()) <= seeds  # every label traces back to a labeled seed
    train = load("digits", "train", size=8, channels=1)
    label_of = dict(zip(train.indices.tolist(), train.labels.tolist()))
    assert all(label_of[i] == y for i, y in zip(grown.tolist(), labels.tolist()))
    # with no noise, 2 seeds per class alone give 20 distinct images: more means unlabeled codes were used
    with h5py.File(tmp_path / "u.h5") as f:
        assert len({row.tobytes() for row in f["images"][:]}) > 20 * 2


def test_include_unlabeled_writes_every_joined_image_once_as_real_with_its_spread_label(run, tmp_path):
    result = aug.augment(_opts(run, tmp_path / "w.h5", seeds_per_class=2, per_class=4, include_seeds=True,
                               include_unlabeled=True))
    train = load("digits", "train", size=8, channels=1)
    with h5py.File(tmp_path / "w.h5") as f:
        real, labels, index = f["real"][:], f["labels"][:], f["seed_index"][:]
        confidence, latent, noise = f["label_confidence"][:], f["latent"][:], f["noise"][:]
        images = f["images"][:]
    assert sorted(index[real].tolist()) == sorted(train.indices.tolist())  # 20 seeds + every other train image, once
    assert np.bincount(labels[~real]).tolist() == [4] * 10 and sum(result.counts) == 40 + len(train)
    seeds = set(inspect(tmp_path / "w.h5").provenance["seed_indices"])
    joined = real & ~np.isin(index, list(seeds))
    position = {int(i): p for p, i in enumerate(train.indices.tolist())}
    assert np.array_equal(images[real], train.images[[position[int(i)] for i in index[real]]].numpy())
    assert (confidence[joined] <= 1).all() and (confidence[joined] < 1).any() and (noise[real] == 0).all()
    assert not np.isnan(latent[real]).any()
    assert (labels[joined] == train.labels[[position[int(i)] for i in index[joined]]].numpy()).mean() > 0.3
    data = SyntheticDataset(tmp_path / "w.h5")  # README's way to tell the seeds from the unlabeled real rows
    assert (np.isin(data.seed_index, data.provenance["seed_indices"]) & data.real).sum() == 20
    sure = aug.augment(_opts(run, tmp_path / "sure.h5", seeds_per_class=2, per_class=4, include_unlabeled=True,
                             min_label_confidence=float(np.median(confidence[joined]))))
    assert 0 < sum(sure.counts) - 40 < joined.sum()  # less sure spread labels are left out


def test_an_image_the_label_graph_never_reaches_joins_no_class():
    from datagen.generate.pseudo import joins

    confidence = torch.tensor([0.0, 0.2, 0.9])
    assert joins(confidence, 0.0).tolist() == [False, True, True] and joins(confidence, 0.5).tolist() == [False, False, True]
    pools = aug.class_pools(torch.eye(3), torch.tensor([0, 1, 2]), confidence, torch.tensor([0, 0, 1]), 2)
    assert [len(p.z) for p in pools] == [1, 1]  # the unreached code (confidence 0) is in no pool


@pytest.mark.parametrize("change", [{"unlabeled": False}, {"seeds_per_class": None}])
def test_include_unlabeled_without_unlabeled_images_says_what_to_do(run, tmp_path, change):
    with pytest.raises(DatagenError, match="--include-unlabeled"):
        aug.augment(_opts(run, tmp_path / "x.h5", include_unlabeled=True, **change))
    assert not (tmp_path / "x.h5").exists()


def test_unlabeled_without_any_unlabeled_image_says_what_to_do(run, tmp_path):
    with pytest.raises(DatagenError, match="--seeds-per-class"):
        aug.augment(_opts(run, tmp_path / "x.h5", unlabeled=True, seeds_per_class=None))
    assert not (tmp_path / "x.h5").exists()


def test_the_filter_is_fitted_once_per_seed_set_and_reused(run, tmp_path, monkeypatch):
    import shutil

    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    shutil.copyfile(rundir.checkpoint_of(run), ckpt)
    result = aug.augment(_opts(ckpt, tmp_path / "a.h5"))
    assert set(result.seconds) >= {"filter_fit", "encode", "generate", "finish", "previews"}
    with pytest.raises(filtering.FilterCapError):  # a 1-epoch tiny G: its filter rejects everything, but it is fitted first
        aug.augment(_opts(ckpt, tmp_path / "f.h5", filter=True))
    cache = tmp_path / "run" / filtering.FILTER_CACHE
    assert len(list(cache.glob("*.pt"))) == 1  # augment fitted its filter into the run folder

    seeds = load("digits", "train", size=8, channels=1)
    images, labels = seeds.images[:40], seeds.labels[:40]
    x = to_model_input(images)
    fitted = filtering.filter_classifier(cache, images, x, labels, 10, seed=0)

    def no_fit(*args, **kwargs):
        raise AssertionError("the cached filter should have been used")

    monkeypatch.setattr(filtering, "train_classifier", no_fit)
    reused = filtering.filter_classifier(cache, images, x, labels, 10, seed=0)
    with torch.inference_mode():
        assert torch.equal(fitted(x), reused(x))  # the very same net
    for other in (dict(seed=1), dict(labels=labels.roll(1))):  # anything the fit depends on: another filter
        with pytest.raises(AssertionError, match="cached filter"):
            filtering.filter_classifier(cache, images, x, other.get("labels", labels), 10, seed=other.get("seed", 0))


def test_the_automatic_filter_steps_aside_for_a_g_it_would_reject(run, tmp_path, capsys):
    """A 1-epoch tiny G: the filter rejects nearly all its neighbours. Asked for, it stops on its cap; by default
    (every class has 10 seeds, where it is on) a fixed probe shows it, and augment writes without it, saying so."""
    with pytest.raises(filtering.FilterCapError):
        aug.augment(_opts(run, tmp_path / "asked.h5", seeds_per_class=10, filter=True))
    result = aug.augment(_opts(run, tmp_path / "auto.h5", seeds_per_class=10, filter=None))
    assert result.counts == [7] * 10 and "writing without it; --filter insists on it" in capsys.readouterr().err
    assert inspect(tmp_path / "auto.h5").provenance["filter"] is False
    resumed = aug.augment(_opts(run, tmp_path / "auto.h5", seeds_per_class=10, filter=None, resume=True))
    assert resumed.counts == [7] * 10  # the probe decides the same way again, so the settings match
