"""Tests for datagen.store: both output formats round-trip, resume (also after kill -9), and inspect finds damage."""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.common.files import safe_name
from datagen.data.sources import load
from datagen.store import hdf5
from datagen.store.base import FORMATS, Writer
from datagen.store.imagefolder import folder_names
from datagen.store.inspect import inspect
from datagen.store.writers import Overlapped, open_writer

SHAPE = (8, 8, 1)
NAMES = ["zero", "one", "two"]
PROV = {"checkpoint_sha256": "ab" * 32, "noise": 0.3, "seed": 0, "per_class": 6, "source": "digits",
        "datagen_version": "0.1.0", "layers": [1, 2]}


def _batch(start: int, n: int) -> tuple[np.ndarray, ...]:
    """Sample i: every pixel (7·i) mod 256, label i mod 3, seed i // 2, real every fifth."""
    idx = np.arange(start, start + n)
    images = np.broadcast_to((idx * 7 % 256).astype(np.uint8)[:, None, None, None], (n, *SHAPE)).copy()
    return images, idx % 3, idx // 2, idx % 5 == 0


def _out(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / ("out.h5" if fmt == "hdf5" else "out")


def _open(path: Path, fmt: str, **kw) -> Writer:
    kw = {"image_shape": SHAPE, "class_names": NAMES, "provenance": PROV, **kw}
    return open_writer(path, fmt, **kw)


def _write(path: Path, fmt: str, sizes=(5, 7, 6), start: int = 0, finish: bool = True, **kw) -> Writer:
    with _open(path, fmt, **kw) as writer:
        for n in sizes:
            writer.write(*_batch(start, n))
            start += n
        if finish:
            writer.finish()
    return writer


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _per_class(path: Path, key: str) -> list[list]:
    """One column of an ImageFolder output's metadata.jsonl, split by class."""
    out: list[list] = [[] for _ in NAMES]
    for line in (path / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["label"]].append(row[key])
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt):
    path = _out(tmp_path, fmt)
    with _open(path, fmt) as writer:
        images, labels, seeds, real = _batch(0, 5)
        writer.write(*(torch.from_numpy(column) for column in (images, labels, seeds, real)))  # tensors work too
        writer.write(*_batch(5, 7))
        writer.write(*_batch(12, 6))
        assert writer.counts() == [6, 6, 6]
        writer.finish()
    summary = inspect(path)
    assert summary.problems == []
    assert (summary.format, summary.complete, summary.image_shape) == (fmt, True, SHAPE)
    assert summary.class_names == NAMES and summary.counts == [6, 6, 6] and summary.provenance == PROV
    idx = np.arange(18)
    assert summary.real_counts == np.bincount(idx[idx % 5 == 0] % 3, minlength=3).tolist()


def test_hdf5_layout_and_datagen_load(tmp_path):
    path = tmp_path / "out.h5"
    _write(path, "hdf5")
    images, labels, seeds, real = _batch(0, 18)
    with h5py.File(path, "r") as f:
        ds = f["images"]
        assert ds.dtype == np.uint8 and ds.shape == (18, *SHAPE) and ds.maxshape == (None, *SHAPE)
        assert ds.chunks[1:] == SHAPE and 64 << 10 <= np.prod(ds.chunks) <= 256 << 10
        assert (ds.compression, ds.compression_opts, ds.shuffle) == ("gzip", 1, True)
        assert [dim.label for dim in ds.dims] == ["sample", "height", "width", "channel"]
        assert np.array_equal(ds[()], images) and np.array_equal(f["labels"][()], labels)
        assert np.array_equal(f["seed_index"][()], seeds) and f["real"].dtype == np.bool_
        assert np.array_equal(f["real"][()], real)
        assert all(f[name].maxshape == (None,) for name in ("labels", "seed_index", "real"))
        assert (f.attrs["n_written"], bool(f.attrs["complete"])) == (18, True)
        assert json.loads(f.attrs["provenance"]) == PROV and json.loads(f.attrs["class_names"]) == NAMES
    assert not list(tmp_path.glob(".*"))  # the packing file was renamed into place
    train = load(str(path), "train", size=8, channels=1)
    assert train.class_names == tuple(NAMES) and len(train) == 18  # a datagen output is all train: no test split
    assert len(load(str(path), "test", size=8, channels=1)) == 0
    assert np.array_equal(train.images.numpy(), images[train.indices.numpy()])


def test_parallel_packing_stores_the_bytes_h5py_would(tmp_path):
    """finish() deflates image chunks in threads: the file must hold what h5py's own gzip writes, edge chunk too."""
    shape = (32, 32, 3)
    n = 3000  # 71 chunks of 42 rows (more than one round of parallel packing) and a partial one
    images = np.random.default_rng(0).integers(0, 8, (n, *shape), dtype=np.uint8)  # compressible, not trivially
    with open_writer(tmp_path / "out.h5", "hdf5", image_shape=shape, class_names=NAMES, provenance=PROV) as writer:
        writer.write(images, np.arange(n) % 3, np.arange(n), np.zeros(n, bool))
        writer.finish()
    with h5py.File(tmp_path / "out.h5", "r") as f, h5py.File(tmp_path / "h5py.h5", "w") as ref:
        ds = f["images"]
        mine = ref.create_dataset("images", data=images, chunks=ds.chunks, compression="gzip",
                                  compression_opts=ds.compression_opts, shuffle=True)
        assert np.array_equal(ds[()], images)
        starts = range(0, n, ds.chunks[0])
        assert len(starts) > hdf5._PACK_CHUNKS and n % ds.chunks[0]
        for start in starts:
            assert ds.id.read_direct_chunk((start, 0, 0, 0)) == mine.id.read_direct_chunk((start, 0, 0, 0))


def test_hdf5_large_provenance_goes_into_a_dataset(tmp_path):
    path, prov = tmp_path / "out.h5", {**PROV, "notes": "x" * (40 << 10)}
    _write(path, "hdf5", provenance=prov)
    with h5py.File(path, "r") as f:
        assert "provenance" not in f.attrs and "provenance_json" in f
    assert inspect(path).provenance == prov
    with pytest.raises(DatagenError, match="noise"):
        _open(path, "hdf5", provenance={**prov, "noise": 0.5}, resume=True)


def test_imagefolder_is_read_by_torchvision(tmp_path):
    from torchvision.datasets import ImageFolder

    path = tmp_path / "out"
    _write(path, "imagefolder")
    manifest = _manifest(path)
    folder_class = dict(zip(manifest["folders"], manifest["class_names"]))
    dataset = ImageFolder(str(path))
    # ImageFolder numbers classes by sorted folder name; the manifest says which class each folder holds.
    assert [folder_class[folder] for folder in dataset.classes] == NAMES
    assert Counter(folder_class[dataset.classes[t]] for t in dataset.targets) == {name: 6 for name in NAMES}
    images, labels, seeds, real = _batch(0, 18)
    for label in range(3):
        assert _per_class(path, "seed_index")[label] == seeds[labels == label].tolist()
        assert _per_class(path, "real")[label] == real[labels == label].tolist()
    first_two = path / manifest["folders"][2] / "000000.png"  # sample 2: the first of class 2
    assert np.array_equal(np.asarray(Image.open(first_two)), images[2, ..., 0])
    assert not [p for p in path.rglob("*") if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("fmt", FORMATS)
def test_existing_output_needs_resume_or_overwrite(tmp_path, fmt):
    path = _out(tmp_path, fmt)
    _write(path, fmt)
    with pytest.raises(DatagenError, match="exists: pass --resume to continue it or --overwrite to replace it"):
        _open(path, fmt)
    with _open(path, fmt, overwrite=True) as writer:
        assert writer.counts() == [0, 0, 0]
    assert inspect(path).counts == [0, 0, 0]


def test_overwrite_never_deletes_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DatagenError, match="refusing to delete"):
        _open(tmp_path / "mine", "imagefolder", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_continues_and_counts_add_up(tmp_path, fmt):
    path = _out(tmp_path, fmt)
    _write(path, fmt, sizes=(5, 7), finish=False)
    assert _write(path, fmt, sizes=(6,), start=12, resume=True).counts() == [6, 6, 6]
    summary = inspect(path)
    assert summary.problems == [] and summary.counts == [6, 6, 6]
    if fmt == "hdf5":
        with h5py.File(path, "r") as f:
            assert np.array_equal(f["seed_index"][()], np.arange(18) // 2)
    elif fmt == "imagefolder":
        assert _per_class(path, "seed_index")[0] == (np.arange(0, 18, 3) // 2).tolist()
    with _open(path, fmt, resume=True) as writer:  # a finished output resumes as done
        assert writer.counts() == [6, 6, 6]
        writer.finish()
    assert inspect(path).problems == []
    with _open(tmp_path / f"new-{path.name}", fmt, resume=True) as writer:  # nothing to resume: a new output
        assert writer.counts() == [0, 0, 0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_with_other_settings_names_the_difference(tmp_path, fmt):
    path = _out(tmp_path, fmt)
    _write(path, fmt, finish=False)
    with pytest.raises(DatagenError, match=r"noise = 0\.3, not 0\.5.*--overwrite"):
        _open(path, fmt, provenance={**PROV, "noise": 0.5}, resume=True)
    with pytest.raises(DatagenError, match="class_names"):
        _open(path, fmt, class_names=["a", "b", "c"], resume=True)
    with pytest.raises(DatagenError, match="image_shape"):
        _open(path, fmt, image_shape=(8, 8, 3), resume=True)
    # Keys outside RESUME_MUST_MATCH may change, and a key only one side has is not compared.
    loose = {**{k: v for k, v in PROV.items() if k != "seed"}, "datagen_version": "0.2.0", "filter": "classifier"}
    with _open(path, fmt, provenance=loose, resume=True) as writer:
        assert writer.counts() == [6, 6, 6]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unwritable_path(tmp_path, fmt):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DatagenError, match=r"a-file.*choose a writable --out"):
        _open(tmp_path / "a-file" / "sub" / "out", fmt)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
@pytest.mark.parametrize("fmt", FORMATS)
def test_read_only_directory(tmp_path, fmt):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(DatagenError, match=r"ro.*choose a writable --out"):
        _open(tmp_path / "ro" / "out", fmt)


def test_class_names_become_safe_unique_folders(tmp_path):
    names = ["a/b", "..", "a-b", "data", "Cat", "cat", "manifest.json", "../../escape"]
    folders = folder_names(names)
    assert len({folder.lower() for folder in folders}) == len(names)
    assert sorted(folders) == folders  # ImageFolder's class order is ours
    assert all(folder == safe_name(folder) and folder.lower() != "manifest.json" for folder in folders)
    path = tmp_path / "out"
    with open_writer(path, "imagefolder", image_shape=SHAPE, class_names=names, provenance={}) as writer:
        idx = np.arange(len(names))
        writer.write(np.zeros((len(names), *SHAPE), np.uint8), idx, idx, idx < 0)
        writer.finish()
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == folders
    assert sorted(png.parent.name for png in path.rglob("*.png")) == folders  # one image each, none elsewhere
    assert not (tmp_path / "escape").exists()
    summary = inspect(path)
    assert summary.class_names == names and summary.problems == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_unfinished_output(tmp_path, fmt):
    path = _out(tmp_path, fmt)
    _write(path, fmt, finish=False)
    summary = inspect(path)
    assert not summary.complete and summary.counts == [6, 6, 6]
    assert len(summary.problems) == 1 and "incomplete" in summary.problems[0]
    if fmt == "hdf5":
        with pytest.raises(DatagenError, match="incomplete"):
            load(str(path), size=8, channels=1)


def test_inspect_names_damaged_pngs(tmp_path):
    path = tmp_path / "out"
    _write(path, "imagefolder")
    zero, one, two = _manifest(path)["folders"]
    damaged = path / one / "000002.png"
    damaged.write_bytes(damaged.read_bytes()[:40])
    (path / zero / "000001.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path / two / "000003.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path / two / "000006.png")
    problems = "\n".join(inspect(path).problems)
    assert f"{one}/000002.png is unreadable" in problems
    assert f"{zero}/000001.png is missing" in problems
    assert f"{two}/000003.png is 4×4 L, expected 8×8 L" in problems
    assert f"{two}/000006.png is not recorded in metadata.jsonl" in problems


def test_inspect_hdf5_damage(tmp_path):
    path = tmp_path / "out.h5"
    _write(path, "hdf5")
    with h5py.File(path, "a") as f:
        f["labels"][3] = 7
        f.attrs["n_written"] = 25
    problems = "\n".join(inspect(path).problems)
    assert "1 labels lie outside 0..2 (first at row 3)" in problems
    assert "n_written is 25 but 'images' holds only 18 rows" in problems


def test_inspect_refuses_what_is_not_an_output(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images"] = np.zeros((1, 2, 2, 1), np.uint8)
    for path, message in [(tmp_path / "missing", "does not exist"), (tmp_path / "folder", "without manifest.json"),
                          (tmp_path / "notes.txt", "not an HDF5 file"), (tmp_path / "other.h5", "did not write")]:
        with pytest.raises(DatagenError, match=message):
            inspect(path)
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # ours, but damaged: no raise
    assert "cannot open" in inspect(tmp_path / "broken.h5").problems[0]


# --- kill -9 -------------------------------------------------------------------------------------------------------

_KILLED_WRITER = """
import sys
from pathlib import Path
import numpy as np
from datagen.store.writers import open_writer
path, fmt = Path(sys.argv[1]), sys.argv[2]
writer = open_writer(path, fmt, image_shape=(8, 8, 1), class_names=["a", "b", "c"], provenance={"seed": 0},
                     resume=True)
n = sum(writer.counts())
while True:  # until killed
    idx = np.arange(n, n + 16)
    writer.write(np.broadcast_to((idx % 251).astype(np.uint8)[:, None, None, None], (16, 8, 8, 1)),
                 idx % 3, idx, idx % 7 == 0)
    n += 16
    print(n, flush=True)
"""


def _kill_while_writing(path: Path, fmt: str, rng: np.random.Generator) -> int:
    """Start a writer that resumes `path` and writes forever; SIGKILL it; return the last count it reported."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), fmt], stdout=subprocess.PIPE, text=True)
    try:
        reported = [proc.stdout.readline() for _ in range(int(rng.integers(2, 10)))]
        assert reported[-1], "the writer died before it was killed (see its stderr above)"
        time.sleep(rng.uniform(0, 0.004))  # land anywhere in a write, flushes included
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
        proc.stdout.close()
    return int(reported[-1])


def _resumed_count(path: Path, fmt: str) -> int:
    with open_writer(path, fmt, image_shape=(8, 8, 1), class_names=["a", "b", "c"], provenance={"seed": 0},
                           resume=True) as writer:
        return sum(writer.counts())


def test_hdf5_survives_kill_9(tmp_path):
    path, rng = tmp_path / "out.h5", np.random.default_rng(0)
    for _ in range(5):  # the same file, killed and resumed again and again
        acknowledged = _kill_while_writing(path, "hdf5", rng)
        n = _resumed_count(path, "hdf5")
        assert n >= acknowledged  # nothing write() had returned from is lost
        idx = np.arange(n)
        with h5py.File(path, "r") as f:
            assert len(f["images"]) == n == f.attrs["n_written"]
            assert np.array_equal(f["images"][:, 3, 5, 0], idx % 251) and np.array_equal(f["labels"][()], idx % 3)
            assert np.array_equal(f["seed_index"][()], idx) and np.array_equal(f["real"][()], idx % 7 == 0)
        assert [p for p in inspect(path).problems if "incomplete" not in p] == []


def test_imagefolder_survives_kill_9(tmp_path):
    path, rng = tmp_path / "out", np.random.default_rng(1)
    for _ in range(2):
        acknowledged = _kill_while_writing(path, "imagefolder", rng)
        n = _resumed_count(path, "imagefolder")
        assert n >= acknowledged
        summary = inspect(path)
        assert [p for p in summary.problems if "incomplete" not in p] == []  # every PNG decodes, none extra
        manifest, idx = _manifest(path), np.arange(n)
        for label, folder in enumerate(manifest["folders"]):
            members = idx[idx % 3 == label]
            assert _per_class(path, "seed_index")[label] == members.tolist()
            assert np.asarray(Image.open(path / folder / f"{len(members) - 1:06d}.png"))[0, 0] == members[-1] % 251
        assert not list(path.rglob(".*"))  # temp files of the killed write are gone


def test_overlapped_writes_give_the_same_file_and_surface_errors(tmp_path):
    _write(tmp_path / "plain.h5", "hdf5")
    with Overlapped(_open(tmp_path / "bg.h5", "hdf5")) as writer:
        start = 0
        for n in (5, 7, 6):
            writer.write(*_batch(start, n))
            start += n
        assert writer.counts() == [6, 6, 6]  # waits for the batch in flight
        writer.finish()
    with h5py.File(tmp_path / "plain.h5") as a, h5py.File(tmp_path / "bg.h5") as b:
        for name in ("images", "labels", "seed_index", "real"):
            assert np.array_equal(a[name][:], b[name][:])
    assert inspect(tmp_path / "bg.h5").complete

    writer = Overlapped(_open(tmp_path / "bad.h5", "hdf5"))
    images, labels, seeds, real = _batch(0, 4)
    writer.write(images, labels + 5, seeds, real)  # labels out of range: fails on the background thread
    with pytest.raises(ValueError, match="labels must lie"):
        writer.write(*_batch(4, 4))  # ... and surfaces on the next call
    writer.close()
    assert inspect(tmp_path / "bad.h5").counts == [0, 0, 0]


def test_resuming_a_finished_hdf5_output_leaves_it_byte_for_byte(tmp_path):
    import hashlib

    path = tmp_path / "out.h5"
    _write(path, "hdf5")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with _open(path, "hdf5", resume=True) as writer:
        assert writer.counts() == [6, 6, 6]
        writer.finish()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
