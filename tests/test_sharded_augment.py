"""`datagen augment --shard i/n`: each shard its own complete file, an index over them read as one output."""

import shutil
from collections import Counter

import h5py
import numpy as np
import pytest
from torch.utils.data import DataLoader

import datagen
from datagen.common.errors import DatagenError
from datagen.data.sources import load
from datagen.generate import augment as aug
from datagen.store.inspect import inspect
from datagen.store.shards import Shard, shard_path

# `run` (conftest): a private copy of the 1-epoch tiny8 digits run (10 classes, 8×8 grey).


def _opts(run, out, **kw):
    base = dict(run=run, per_class=7, seeds_per_class=3, filter=False, out=out, batch_size=5, progress=False,
                include_unlabeled=False)  # generated rows only, unless a test asks for the real ones
    base.update(kw)
    return aug.AugmentOptions(**base)


def _by_class(path):
    """Each class's images, in row order."""
    with h5py.File(path) as f:
        images, labels = f["images"][:], f["labels"][:]
    return [images[labels == c] for c in range(10)]


def test_two_shards_give_exact_counts_through_inspect_and_synthetic_dataset(cli, run, tmp_path):
    args = ["augment", str(run), "--per-class", "7", "--no-filter", "--seeds-per-class", "3", "--exclude-unlabeled",
            "--out", "set/aug.h5"]
    later = cli(*args, "--shard", "1/2")  # either order: the index waits for the last one
    assert later.returncode == 0, later.stderr
    assert "index is written when the last shard finishes" in later.stderr and not (tmp_path / "set/aug.h5").exists()
    assert inspect(tmp_path / "set/aug-shard-00001-of-00002.h5").counts == [3] * 10  # 7 = 4 + 3
    waiting = cli("inspect", "set/aug.h5")
    assert waiting.returncode == 2 and "0/2 (not started)" in waiting.stderr and len(waiting.stderr.splitlines()) == 1
    last = cli(*args, "--shard", "0/2")
    assert last.returncode == 0, last.stderr
    assert "index -> set/aug.h5" in last.stderr
    shown = cli("inspect", "set/aug.h5")
    assert shown.returncode == 0 and "2 shards" in " ".join(shown.stdout.split()) and "verified" in shown.stdout
    index = tmp_path / "set/aug.h5"
    summary = inspect(index)
    assert summary.complete and not summary.problems and summary.counts == [7] * 10
    assert summary.provenance["shard"]["files"] == ["aug-shard-00000-of-00002.h5", "aug-shard-00001-of-00002.h5"]
    ds = datagen.SyntheticDataset(index)
    assert len(ds) == 70 and ds.counts() == [7] * 10 and ds.latent.shape == (70, ds.latent.shape[1])
    seen = Counter()
    for x, y in DataLoader(ds, batch_size=8, shuffle=True, num_workers=2):
        assert tuple(x.shape[1:]) == (1, 8, 8)
        seen.update(y.tolist())
    assert [seen[c] for c in range(10)] == [7] * 10
    assert np.bincount(load(str(index), "train", size=8, channels=1).labels.numpy()).tolist() == [7] * 10


def test_the_shards_together_are_the_unsharded_output(run, tmp_path):
    """A batch's seeds and noise follow from its position in the whole set: no two shards repeat an image, and
    with whole batches per shard (no filter) they are, class by class, exactly the unsharded output."""
    aug.augment(_opts(run, tmp_path / "one.h5", per_class=10))
    for i in (0, 1):
        aug.augment(_opts(run, tmp_path / "two.h5", per_class=10, shard=f"{i}/2"))
    whole, shards = _by_class(tmp_path / "one.h5"), _by_class(tmp_path / "two.h5")
    first = _by_class(shard_path(tmp_path / "two.h5", 0, 2))
    assert all(np.array_equal(a, b) for a, b in zip(whole, shards))
    assert all(len(f) == 5 for f in first) and not np.array_equal(first[0], shards[0][5:])


def test_by_default_the_unlabeled_images_go_to_shard_0_once(run, tmp_path):
    index = tmp_path / "u.h5"
    results = [aug.augment(_opts(run, index, shard=f"{i}/2", include_unlabeled=None)) for i in (1, 0)]
    unlabeled = len(load("digits", "train", size=8, channels=1)) - 30
    assert sum(results[1].real) == unlabeled and sum(results[0].real) == 0  # shard 1/2 ran first
    summary = inspect(index)
    assert sum(summary.real_counts) == unlabeled and not summary.problems
    assert [c - r for c, r in zip(summary.counts, summary.real_counts)] == [7] * 10


def test_a_shard_resumes_on_its_own_and_only_then_is_the_index_written(run, tmp_path, monkeypatch):
    original, calls = aug.candidates, {"n": 0}

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kw)

    index = tmp_path / "r.h5"
    monkeypatch.setattr(aug, "candidates", dying)
    with pytest.raises(KeyboardInterrupt):
        aug.augment(_opts(run, index, shard="1/2", include_seeds=True))  # the seeds go to shard 0 only
    monkeypatch.setattr(aug, "candidates", original)
    done = aug.augment(_opts(run, index, shard="0/2", include_seeds=True))
    assert done.index is None and not index.exists()
    for read in (inspect, datagen.SyntheticDataset):
        with pytest.raises(DatagenError, match="shards 1/2 are unfinished"):
            read(index)
    resumed = aug.augment(_opts(run, index, shard="1/2", resume=True, include_seeds=True))
    assert resumed.index == index and resumed.counts == [3] * 10
    summary = inspect(index)
    assert not summary.problems and summary.counts == [10] * 10 and summary.real_counts == [3] * 10
    aug.augment(_opts(run, tmp_path / "straight.h5", shard="1/2"))
    assert np.array_equal(h5py.File(shard_path(index, 1, 2))["images"][:],
                          h5py.File(shard_path(tmp_path / "straight.h5", 1, 2))["images"][:])
    again = aug.augment(_opts(run, index, shard="0/2", resume=True, include_seeds=True))  # nothing to add
    assert again.index == index and inspect(index).counts == [10] * 10


def test_the_index_survives_moving_the_folder_and_names_a_missing_shard(run, tmp_path):
    for i in range(3):
        aug.augment(_opts(run, tmp_path / "a" / "x.h5", per_class=2, shard=f"{i}/3"))  # shard 2/3 holds none
    moved = tmp_path / "b"
    shutil.move(tmp_path / "a", moved)
    assert datagen.SyntheticDataset(moved / "x.h5", in_memory=True).counts() == [2] * 10
    assert inspect(moved / "x.h5").counts == [2] * 10
    shard_path(moved / "x.h5", 1, 3).unlink()
    with pytest.raises(DatagenError, match=r"shard 1/3 \(x-shard-00001-of-00003.h5\) is missing"):
        datagen.SyntheticDataset(moved / "x.h5")
    problems = inspect(moved / "x.h5").problems
    assert any("1/3" in p and "missing" in p for p in problems)
    assert any("labels lie outside" in p for p in problems)  # the index's own view: fill values where it was


@pytest.mark.parametrize("shard", ["2/2", "1", "-1/2", "a/b", "0/0"])
def test_bad_shard_values_are_one_line(cli, run, shard):
    done = cli("augment", str(run), "--per-class", "2", "--no-filter", "--shard", shard)
    assert done.returncode == 2 and "--shard" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_other_refusals_are_one_line(cli, run, tmp_path, monkeypatch):
    folder = cli("augment", str(run), "--per-class", "2", "--no-filter", "--format", "imagefolder", "--shard", "0/2")
    assert folder.returncode == 2 and "--format hdf5" in folder.stderr
    plain = cli("augment", str(run), "--per-class", "2", "--no-filter", "--seeds-per-class", "1", "--out", "p.h5")
    assert plain.returncode == 0, plain.stderr
    kept = cli("augment", str(run), "--per-class", "2", "--no-filter", "--out", "p.h5", "--shard", "0/2")
    assert kept.returncode == 2 and "--overwrite" in kept.stderr and inspect(tmp_path / "p.h5").complete
    aug.augment(_opts(run, tmp_path / "m.h5", shard="0/2"))
    with pytest.raises(DatagenError, match="seed = 1"):
        aug.augment(_opts(run, tmp_path / "m.h5", shard="1/2", seed=1))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    env = cli("augment", str(run), "--per-class", "2", "--no-filter")
    assert env.returncode == 2 and "RANK" in env.stderr


def test_torchrun_ranks_pick_their_shard(cli, run, tmp_path, monkeypatch):
    args = ["augment", str(run), "--per-class", "7", "--no-filter", "--seeds-per-class", "1", "--exclude-unlabeled"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli(*args, "--out", "t.h5").returncode == 0
    assert inspect(Shard(1, 2).path(tmp_path / "t.h5")).counts == [3] * 10 and not (tmp_path / "t.h5").exists()
    assert aug.augment(_opts(run, tmp_path / "api.h5")).path == tmp_path / "api.h5"  # the API shards when told
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: an ordinary output
    monkeypatch.setenv("RANK", "0")
    assert cli(*args, "--out", "u.h5").returncode == 0 and inspect(tmp_path / "u.h5").counts == [7] * 10


def test_shares_add_up_to_exactly_n():
    for n in (1, 2, 3, 7):
        for per_class in (1, 5, 7, 100):
            shares = [Shard(i, n).share(per_class) for i in range(n)]
            assert sum(shares) == per_class and max(shares) - min(shares) <= 1
            assert [Shard(i, n).offset(per_class) for i in range(n)] == np.cumsum([0, *shares[:-1]]).tolist()
