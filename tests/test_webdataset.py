"""The webdataset output: tar shards that plain tarfile and the webdataset package read, resume, kill -9, inspect."""

import io
import json
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_store import _kill_while_writing, _resumed_count  # the kill -9 harness every format shares

from datagen.common.errors import DatagenError
from datagen.store.inspect import inspect
from datagen.store.writers import open_writer

SHAPE = (8, 8, 3)
NAMES = ["zero", "one", "two"]
PROV = {"checkpoint_sha256": "ab" * 32, "noise": 0.3, "seed": 0, "source": "digits"}
LATENT = 4


def _batch(start: int, n: int, shape=SHAPE) -> tuple:
    """Sample i: random pixels drawn from seed i, label i mod 3, seed i // 2, real every fifth, latent i + 0.25·k."""
    idx = np.arange(start, start + n)
    images = np.stack([np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8) for i in idx])
    details = {"label_confidence": np.full(n, 0.5), "noise": idx / 10,
               "latent": idx[:, None] + 0.25 * np.arange(LATENT)[None, :]}
    return images, idx % 3, idx // 2, idx % 5 == 0, details


def _open(path: Path, **kw):
    kw = {"image_shape": SHAPE, "class_names": NAMES, "provenance": PROV, "latent_dim": LATENT, "shard_size": 4, **kw}
    return open_writer(path, "webdataset", **kw)


def _write(path: Path, sizes=(5, 7, 6), start: int = 0, finish: bool = True, **kw) -> None:
    with _open(path, **kw) as writer:
        for n in sizes:
            images, labels, seeds, real, details = _batch(start, n, kw.get("image_shape", SHAPE))
            if kw.get("latent_dim", LATENT) is None:
                del details["latent"]
            writer.write(images, labels, seeds, real, details)
            start += n
        if finish:
            writer.finish()


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _shards(path: Path) -> list[Path]:
    return [path / shard["name"] for shard in _manifest(path)["shards"]]


def _read_with_tarfile(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(member name, bytes) for every member of every shard, in order, with plain tarfile."""
    members = []
    for shard in _shards(path):
        with tarfile.open(shard) as tar:
            members += [(m.name, tar.extractfile(m).read()) for m in tar]
    return members


def test_shards_read_back_with_tarfile(tmp_path):
    path = tmp_path / "out"
    _write(path)
    manifest = _manifest(path)
    assert [shard["samples"] for shard in manifest["shards"]] == [4, 4, 4, 4, 2]
    assert (manifest["format"], manifest["complete"], manifest["counts"]) == ("webdataset", True, [6, 6, 6])
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", *(f"shard-{i:06d}.tar" for i in range(5))]
    members = _read_with_tarfile(path)
    images, labels, seeds, real, details = _batch(0, 18)
    assert [name for name, _ in members] == [f"{i:09d}.{ext}" for i in range(18) for ext in ("png", "cls", "json")]
    per_class = [0, 0, 0]
    for i in range(18):
        (_, png), (_, cls), (_, meta) = members[3 * i:3 * i + 3]
        meta = json.loads(meta)
        assert int(cls) == meta["label"] == labels[i]
        per_class[int(cls)] += 1
        assert meta["class_name"] == NAMES[labels[i]] and meta["seed_index"] == seeds[i] and meta["real"] == real[i]
        assert meta["label_confidence"] == 0.5 and meta["noise"] == round(i / 10, 6)
        assert meta["latent"] == [i + 0.25 * k for k in range(LATENT)]
        with Image.open(io.BytesIO(png)) as img:
            assert img.mode == "RGB" and np.array_equal(np.asarray(img), images[i])
    assert per_class == [6, 6, 6]
    summary = inspect(path)
    assert summary.problems == [] and summary.counts == [6, 6, 6] and summary.format == "webdataset"
    assert summary.real_counts == np.bincount(labels[real], minlength=3).tolist()


def test_grey_images_are_L_pngs(tmp_path):
    path = tmp_path / "out"
    _write(path, sizes=(3,), image_shape=(8, 8, 1), latent_dim=None)
    name, png = _read_with_tarfile(path)[0]
    with Image.open(io.BytesIO(png)) as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), _batch(0, 1, (8, 8, 1))[0][0, ..., 0])
    assert "latent" not in json.loads(_read_with_tarfile(path)[2][1])
    assert inspect(path).problems == []


def test_the_webdataset_package_reads_the_shards(tmp_path):
    webdataset = pytest.importorskip("webdataset")
    path = tmp_path / "out"
    _write(path)
    images, labels, seeds, *_ = _batch(0, 18)
    urls = [str(shard) for shard in _shards(path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # webdataset leaves its shard files to the collector
        samples = list(webdataset.WebDataset(urls, shardshuffle=False).decode("rgb8").to_tuple("png", "cls", "json"))
    assert len(samples) == 18
    for i, (image, cls, meta) in enumerate(samples):
        assert cls == meta["label"] == labels[i] and meta["seed_index"] == seeds[i]
        assert np.array_equal(image, images[i])


def test_resume_after_an_interruption_gives_the_uninterrupted_bytes(tmp_path):
    _write(tmp_path / "straight")
    path = tmp_path / "out"
    _write(path, sizes=(5, 7), finish=False)  # 12 samples: shard 2 is full, so the next batch starts shard 3
    recorded = _manifest(path)
    with (path / "shard-000002.tar").open("ab") as fh:  # what a batch killed before its manifest update leaves:
        fh.write(b"\x17" * 700)  # ... bytes past the recorded end,
    (path / "shard-000003.tar").write_bytes(b"half a shard")  # ... a shard the manifest never heard of,
    (path / ".manifest.json.123-0-abc.tmp.json").write_text("{")  # ... and a temporary manifest
    problems = inspect(path).problems
    assert any("shard-000002.tar is" in p and "cut short" in p for p in problems)
    assert any("shard-000003.tar is not recorded" in p for p in problems)
    with _open(path, resume=True) as writer:
        assert writer.counts() == [4, 4, 4] and _manifest(path)["shards"] == recorded["shards"]
        assert sorted(p.name for p in path.iterdir()) == ["manifest.json", *(f"shard-{i:06d}.tar" for i in range(3))]
        with tarfile.open(path / "shard-000002.tar") as tar:  # restored: a whole archive again
            assert len(tar.getmembers()) == 12
        writer.write(*_batch(12, 6))
        writer.finish()
    assert inspect(path).problems == []
    straight = sorted(p.name for p in (tmp_path / "straight").iterdir())
    assert sorted(p.name for p in path.iterdir()) == straight
    for name in straight:  # the same bytes, manifest included: resume continued exactly where it stopped
        assert (path / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_resume_refuses_a_damaged_shard_and_other_settings(tmp_path):
    path = tmp_path / "out"
    _write(path, finish=False)
    with pytest.raises(DatagenError, match="--shard-size 4, not 5"):
        _open(path, resume=True, shard_size=5)
    with _open(path, resume=True, shard_size=None) as writer:  # no --shard-size: the output's own
        assert writer.shard_size == 4
    with pytest.raises(DatagenError, match=r"noise = 0\.3, not 0\.5"):
        _open(path, resume=True, provenance={**PROV, "noise": 0.5})
    shard = path / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(DatagenError, match=r"shard-000001\.tar is 3000 bytes, but manifest\.json records 20480 bytes \(damaged\); pass --overwrite"):
        _open(path, resume=True)
    with _open(path, overwrite=True) as writer:
        assert writer.counts() == [0, 0, 0]


def test_resume_and_overwrite_know_whose_directory_it_is(tmp_path):
    folder = tmp_path / "folder"
    with open_writer(folder, "imagefolder", image_shape=SHAPE, class_names=NAMES, provenance=PROV) as writer:
        writer.write(*_batch(0, 3)[:4])
    with pytest.raises(DatagenError, match="--format imagefolder, not webdataset: pass --format imagefolder"):
        _open(folder, resume=True)
    wds = tmp_path / "wds"
    _write(wds, finish=False)
    with pytest.raises(DatagenError, match="--format webdataset, not imagefolder: pass --format webdataset"):
        open_writer(wds, "imagefolder", image_shape=SHAPE, class_names=NAMES, provenance=PROV, resume=True)
    with pytest.raises(DatagenError, match="--format webdataset, not hdf5"):
        open_writer(wds, "hdf5", image_shape=SHAPE, class_names=NAMES, provenance=PROV, resume=True)
    site = tmp_path / "site"  # a web project: its manifest.json is not ours
    site.mkdir()
    (site / "manifest.json").write_text('{"name": "my app"}')
    for kw in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(DatagenError, match="refusing to delete|is not an output written by datagen"):
            _open(site, **kw)
    assert (site / "manifest.json").exists()
    with pytest.raises(DatagenError, match="--shard-size applies to --format webdataset only"):
        open_writer(tmp_path / "o.h5", "hdf5", image_shape=SHAPE, class_names=NAMES, provenance=PROV, shard_size=9)
    with pytest.raises(DatagenError, match="--shard-size 0"):
        _open(tmp_path / "zero", shard_size=0)


def test_bad_batches_are_rejected_and_leave_the_output_as_it_was(tmp_path):
    path = tmp_path / "out"
    with _open(path) as writer:
        writer.write(*_batch(0, 5))
        images, labels, seeds, real, details = _batch(5, 3)
        for bad, message in [((images.astype(np.float32), labels, seeds, real), "uint8"),
                             ((images[:, :4], labels, seeds, real), "uint8"),
                             ((images, labels + 3, seeds, real), "labels must lie"),
                             ((images, labels[:2], seeds, real), "each hold 3"),
                             ((images, labels, seeds, real, {"latent": details["latent"][:, :2]}), "latent"),
                             ((images, labels, seeds, real, {"colour": labels}), "unknown details")]:
            with pytest.raises(ValueError, match=message):
                writer.write(*bad)
        writer.finish()
    summary = inspect(path)
    assert summary.problems == [] and summary.counts == [2, 2, 1]
    with pytest.raises(ValueError, match="closed"):
        writer.write(*_batch(5, 3))


def test_inspect_names_damage(tmp_path):
    path = tmp_path / "out"
    _write(path)

    def rewrite(shard: str, change) -> None:
        """Rebuild one shard from its members after change(members); the manifest keeps its old record."""
        with tarfile.open(path / shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        change(members)
        with tarfile.open(path / shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    def damage(members):
        members["000000000.png"] = members["000000000.png"][:30]  # cut short
        members["000000001.cls"] = b"2"  # the .json says 1
        small = io.BytesIO()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(small, format="PNG")
        members["000000002.png"] = small.getvalue()
        del members["000000003.json"]
        members["notes.txt"] = b"hello"

    rewrite("shard-000000.tar", damage)
    rewrite("shard-000001.tar", lambda members: members.update({"000000004.json": b'{"label": 7}'}))
    (path / "shard-000003.tar").unlink()
    shutil.copy(path / "shard-000004.tar", path / "shard-000009.tar")
    problems = "\n".join(inspect(path).problems)
    assert "shard-000000.tar: 000000000.png is unreadable" in problems
    assert "sample 000000001: 000000001.cls says 2 but 000000001.json says label 1" in problems
    assert "000000002.png is 4×4 L, expected 8×8 RGB" in problems
    assert "sample 000000003 lacks 000000003.json" in problems
    assert "unexpected member 'notes.txt'" in problems
    assert "sample 000000004: 000000004.cls says 1 but 000000004.json says label 7" in problems
    assert "shard-000003.tar is missing" in problems
    assert "shard-000009.tar is not recorded in manifest.json" in problems
    assert "counts [6, 6, 6] images per class but the shards hold" in problems


def test_webdataset_survives_kill_9(tmp_path):
    path, rng = tmp_path / "out", np.random.default_rng(2)
    for _ in range(2):  # 16 images per batch, 10,000 per shard: the kill lands in a shard being appended to
        acknowledged = _kill_while_writing(path, "webdataset", rng)
        n = _resumed_count(path, "webdataset")
        assert n >= acknowledged  # nothing write() had returned from is lost
        assert [p for p in inspect(path).problems if "incomplete" not in p] == []
        members = _read_with_tarfile(path)
        assert [name for name, _ in members[::3]] == [f"{i:09d}.png" for i in range(n)]
        assert [int(data) for _, data in members[1::3]] == (np.arange(n) % 3).tolist()
        assert not list(path.glob(".*"))  # the killed write's temporary manifest is gone


def test_augment_writes_webdataset_from_the_command_line(cli, run, tmp_path):
    done = cli("augment", str(run), "--per-class", "3", "--no-filter", "--seeds-per-class", "2", "--batch-size", "4",
               "--exclude-unlabeled", "--format", "webdataset", "--shard-size", "7", "--out", "wds")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "wds"
    assert [shard["samples"] for shard in _manifest(path)["shards"]] == [7, 7, 7, 7, 2]
    members = _read_with_tarfile(path)
    labels = [int(data) for name, data in members if name.endswith(".cls")]
    assert np.bincount(labels).tolist() == [3] * 10
    assert labels == [json.loads(data)["label"] for name, data in members if name.endswith(".json")]
    checked = cli("inspect", "wds")
    assert checked.returncode == 0 and "verified: no problems found" in checked.stdout
    assert "(webdataset)" in checked.stdout
    refused = cli("augment", str(run), "--per-class", "3", "--no-filter", "--shard-size", "7", "--out", "o.h5")
    assert refused.returncode == 2 and "--shard-size applies to --format webdataset only" in refused.stderr


def test_a_finished_output_that_grows_is_unfinished_before_its_shard_changes(tmp_path, monkeypatch):
    """A kill during the append must not leave `complete: true` over a shard longer than its record."""
    from datagen.store import webdataset as wd

    path = tmp_path / "out"
    with open_writer(path, "webdataset", image_shape=(4, 4, 1), class_names=["a", "b"], provenance={}) as w:
        w.write(np.zeros((3, 4, 4, 1), np.uint8), [0, 1, 0], [0, 1, 2], [False] * 3)
        w.finish()
    seen = []
    real_append = wd._append
    monkeypatch.setattr(wd, "_append", lambda *a: (seen.append(json.loads((path / "manifest.json").read_text())["complete"]),
                                                   real_append(*a)))
    with open_writer(path, "webdataset", image_shape=(4, 4, 1), class_names=["a", "b"], provenance={},
                             resume=True) as w:
        w.write(np.zeros((1, 4, 4, 1), np.uint8), [1], [3], [False])
    assert seen == [False]
