"""datagen.SyntheticDataset and MixedBatchSampler over augment outputs, and the ImageFolder output's metadata.jsonl."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

import datagen
from datagen.common.errors import DatagenError
from datagen.generate import augment as aug
from datagen.store import writers
from datagen.store.inspect import inspect


NAMES = ["zero", "one", "two"]
PER_CLASS = (7, 5, 9)  # unequal on purpose: counts must come out exact, not rounded


def _write(path: Path, fmt: str, finish: bool = True, channels: int = 1) -> Path:
    """Rows whose pixel (0, 0) is the row number: any image can be matched with its columns after shuffling."""
    labels = np.repeat(np.arange(3), PER_CLASS)
    n = len(labels)
    images = np.zeros((n, 6, 5, channels), np.uint8)
    images[:, 0, 0, :] = np.arange(n)[:, None]
    shards = {"shard_size": 8} if fmt == "webdataset" else {}  # three shards, the last one partly filled
    with writers.open_writer(path, fmt, image_shape=(6, 5, channels), class_names=NAMES, provenance={"made": "test"},
                             latent_dim=2, **shards) as writer:
        for start in range(0, n, 4):
            rows = slice(start, start + 4)
            m = len(labels[rows])
            writer.write(images[rows], labels[rows], np.arange(n)[rows] + 100, np.arange(n)[rows] % 4 == 0,
                         {"label_confidence": np.linspace(0, 1, n)[rows], "noise": np.full(m, 0.5),
                          "latent": np.stack([np.arange(n), -np.arange(n)], 1)[rows]})
        if finish:
            writer.finish()
    return path


@pytest.fixture(params=["hdf5", "imagefolder", "webdataset"])
def output(request, tmp_path):
    return _write(tmp_path / ("out.h5" if request.param == "hdf5" else "out"), request.param)


def test_columns_and_images_line_up(output):
    ds = datagen.SyntheticDataset(output)
    n = sum(PER_CLASS)
    assert len(ds) == n and ds.classes == NAMES and ds.class_to_idx == {"zero": 0, "one": 1, "two": 2}
    assert ds.counts() == list(PER_CLASS) and ds.provenance == {"made": "test"}
    for i in (0, 6, 7, n - 1, -1):
        image, label = ds[i]
        row = i % n
        assert image.dtype == torch.uint8 and tuple(image.shape) == (1, 6, 5) and image[0, 0, 0] == row
        assert label == ds.targets[row] and ds.seed_index[row] == row + 100 and ds.real[row] == (row % 4 == 0)
        assert ds.latent[row].tolist() == [row, -row] and ds.noise[row] == 0.5
    assert np.allclose(ds.label_confidence, np.linspace(0, 1, n), atol=1e-6)
    with pytest.raises(IndexError):
        ds[n]


def test_two_workers_read_every_image_exactly_once(output):
    ds = datagen.SyntheticDataset(output, transform=lambda x: x.float() / 255)
    seen, counts = [], Counter()
    for x, y in DataLoader(ds, batch_size=4, shuffle=True, num_workers=2):
        assert x.dtype == torch.float32
        seen += (x[:, 0, 0, 0] * 255).round().long().tolist()
        counts.update(y.tolist())
    assert sorted(seen) == list(range(sum(PER_CLASS)))
    assert [counts[k] for k in range(3)] == list(PER_CLASS)


def test_in_memory_gives_the_same_rows(output):
    lazy, held = datagen.SyntheticDataset(output), datagen.SyntheticDataset(output, in_memory=True)
    assert all(torch.equal(lazy[i][0], held[i][0]) and lazy[i][1] == held[i][1] for i in range(len(lazy)))


@pytest.mark.parametrize("fmt", ["imagefolder", "webdataset"])
def test_rgb_rows(tmp_path, fmt):
    ds = datagen.SyntheticDataset(_write(tmp_path / "rgb", fmt, channels=3))
    assert tuple(ds[3][0].shape) == (3, 6, 5) and ds[3][0][:, 0, 0].tolist() == [3, 3, 3]


@pytest.mark.parametrize("fmt", ["hdf5", "imagefolder", "webdataset"])
def test_an_incomplete_output_is_refused(tmp_path, fmt):
    path = _write(tmp_path / ("out.h5" if fmt == "hdf5" else "out"), fmt, finish=False)
    with pytest.raises(DatagenError, match="incomplete.*--resume"):
        datagen.SyntheticDataset(path)


def test_what_is_not_an_output_is_refused(tmp_path):
    with pytest.raises(DatagenError, match="does not exist"):
        datagen.SyntheticDataset(tmp_path / "missing.h5")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatagenError, match="not an output of `datagen augment`"):
        datagen.SyntheticDataset(tmp_path / "plain")


def test_a_damaged_shard_is_named(tmp_path):
    path = _write(tmp_path / "out", "webdataset")
    (path / "shard-000001.tar").write_bytes(b"")
    with pytest.raises(DatagenError, match="shard-000001.tar.*datagen inspect"):
        datagen.SyntheticDataset(path)


def test_mixed_batches_hold_the_share_and_show_every_generated_image_once():
    real = TensorDataset(torch.zeros(3), torch.arange(3))
    generated = TensorDataset(torch.ones(50), torch.arange(50))
    both = ConcatDataset([real, generated])
    sampler = datagen.MixedBatchSampler(range(3), range(3, 53), batch_size=8, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13  # 50 generated images, 4 per batch
    assert all(sum(i < 3 for i in b) == 4 for b in batches[:-1])
    assert sorted(i for b in batches for i in b if i >= 3) == list(range(3, 53))
    loader = DataLoader(both, batch_sampler=sampler)
    assert sum(len(x) for x, _ in loader) == 12 * 8 + 4  # the last batch: 2 generated, 2 real
    with pytest.raises(DatagenError, match="real_share"):
        datagen.MixedBatchSampler(range(3), range(3, 53), batch_size=8, real_share=1.0)
    with pytest.raises(DatagenError, match="both real and generated"):
        datagen.MixedBatchSampler([], range(3, 53), batch_size=8)


def test_metadata_jsonl_is_one_line_per_image(tmp_path):
    path = _write(tmp_path / "out", "imagefolder")
    rows = [json.loads(line) for line in (path / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == sum(PER_CLASS)
    assert [r["file_name"] for r in rows[:2]] == ["0-zero/000000.png", "0-zero/000001.png"]
    assert all((path / r["file_name"]).is_file() and r["class_name"] == NAMES[r["label"]] for r in rows)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["counts"] == list(PER_CLASS) and "seed_index" not in manifest  # no per-image lists


def test_hugging_face_imagefolder_reads_the_output(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    path = _write(tmp_path / "out", "imagefolder")
    train = datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert len(train) == sum(PER_CLASS)
    assert Counter(train["label"]) == dict(enumerate(PER_CLASS))
    first = train[0]
    assert first["image"].size == (5, 6) and first["seed_index"] == 100 and first["latent"] == [0.0, 0.0]


def test_a_line_cut_short_is_dropped_on_resume(tmp_path):
    path = _write(tmp_path / "out", "imagefolder", finish=False)
    metadata = path / "metadata.jsonl"
    text = metadata.read_bytes()
    metadata.write_bytes(text[:-25])  # the last line cut mid-way, as a kill inside the append would leave it
    assert any("cut short" in p for p in inspect(path).problems)
    with writers.open_writer(path, "imagefolder", image_shape=(6, 5, 1), class_names=NAMES,
                             provenance={"made": "test"}, latent_dim=2, resume=True) as writer:
        assert writer.counts() == [7, 5, 8]  # the last row of class 2 is gone, and its PNG with it
        writer.write(np.zeros((1, 6, 5, 1), np.uint8), [2], [0], [False])
        writer.finish()
    assert inspect(path).problems == [] and datagen.SyntheticDataset(path).counts() == list(PER_CLASS)


def test_an_output_from_before_metadata_jsonl_is_read_but_not_resumed(tmp_path):
    path = _write(tmp_path / "out", "imagefolder")
    manifest = json.loads((path / "manifest.json").read_text())
    rows = [json.loads(line) for line in (path / "metadata.jsonl").read_text().splitlines()]
    del manifest["metadata"]
    for key in ("seed_index", "real"):
        manifest[key] = [[r[key] for r in rows if r["label"] == k] for k in range(3)]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "metadata.jsonl").unlink()
    assert inspect(path).problems == [] and inspect(path).counts == list(PER_CLASS)
    ds = datagen.SyntheticDataset(path)
    assert ds.counts() == list(PER_CLASS) and ds.label_confidence is None and ds[8][0][0, 0, 0] == 8
    with pytest.raises(DatagenError, match="older datagen.*--overwrite"):
        writers.open_writer(path, "imagefolder", image_shape=(6, 5, 1), class_names=NAMES,
                            provenance={"made": "test"}, latent_dim=2, resume=True)


def test_bench_read_and_write(cli, tmp_path):
    _write(tmp_path / "out.h5", "hdf5")
    done = cli("bench", "read", "out.h5", "--workers", "0", "--json", "read.json")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "read.json").read_text())["rows"]
    assert {r["way"] for r in rows} == {"lazy", "lazy, h5py's 1 MiB cache", "lazy, no chunk cache", "in memory"}
    assert all(r["images"] == sum(PER_CLASS) and r["images_per_s"] > 0 for r in rows)
    done = cli("bench", "write", "--format", "imagefolder", "--per-class", "30", "--json", "write.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "write.json").read_text())
    assert result["images"] == 300 and result["marks"][-1]["images"] == 300
    assert cli("bench", "read", "out.h5", "--workers", "x").stderr.startswith("error: --workers x")


def test_the_readme_training_loop_runs(run, tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Training your own model on the output", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    grown = aug.augment(aug.AugmentOptions(run=run, per_class=12, seeds_per_class=2, filter=False, batch_size=16,
                                           progress=False))  # the default --out: RUN/augmented.h5
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(run)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, "README.md", "exec"), namespace)
    data = namespace["data"]  # 12 generated per class, and the unlabeled images with their spread labels
    assert data.counts() == grown.counts and (~data.real).sum() == 120 and namespace["epoch"] == 4
    assert data.latent.shape == (sum(grown.counts), 8)  # a real augment output: codes recorded
    counts = torch.zeros(10, dtype=torch.long)
    for _, y in namespace["loader"]:  # two workers, as README has it
        counts += torch.bincount(y, minlength=10)
    assert counts.tolist() == grown.counts


def test_a_webdataset_output_is_not_a_training_source(tmp_path):
    from datagen.data.sources import load

    path = _write(tmp_path / "out", "webdataset")
    with pytest.raises(DatagenError, match="webdataset output.*--format hdf5 or imagefolder"):
        load(str(path), size=8, channels=1)


def test_close_releases_the_open_files(output):
    ds = datagen.SyntheticDataset(output)
    ds[0], ds[len(ds) - 1]  # open whatever the format reads from
    ds.close()
    assert ds._h5 is None and (ds._pngs is None or ds._pngs._handles == {})
    assert ds[1][0][0, 0, 0] == 1  # and reading again reopens them


def test_damaged_records_are_one_line(tmp_path):
    path = _write(tmp_path / "out", "imagefolder")
    lines = (path / "metadata.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace('"label":0', '"label":-1')
    (path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatagenError, match="damaged.*datagen inspect"):
        datagen.SyntheticDataset(path)
    (path / "metadata.jsonl").unlink()
    with pytest.raises(DatagenError, match="damaged.*datagen inspect"):
        datagen.SyntheticDataset(path)
    with pytest.raises(DatagenError, match="metadata.jsonl, its record of the images, is missing.*--overwrite"):
        writers.open_writer(path, "imagefolder", image_shape=(6, 5, 1), class_names=NAMES,
                            provenance={"made": "test"}, latent_dim=2, resume=True)
