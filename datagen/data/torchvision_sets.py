"""The torchvision datasets (MNIST, Fashion-MNIST, SVHN, CIFAR-10, CelebA) as sources, with their official splits
(dev carved out of the official train split)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from datagen.common.errors import DatagenError
from datagen.data.conform import rows_per_chunk
from datagen.data.folders import decode
from datagen.data.imageset import DEV_RULE, Selection, array_chunks, official


CELEBA_SHAPE = (218, 178, 3)  # native H×W×C of the aligned CelebA photos


# Official train-set sizes: test indices are offset by these so train/dev and test indices never collide.
_OFFICIAL_TRAIN_SIZES = {"mnist": 60000, "fashion-mnist": 60000, "svhn": 73257, "cifar10": 50000}


def _placement_hint(name: str, split: str, root: Path) -> str:
    """Where the files must go for each torchvision class to find them offline (mirrors each class's own paths)."""
    from torchvision import datasets

    if name in ("mnist", "fashion-mnist"):
        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        files = ", ".join(Path(url).name.removesuffix(".gz") for url, _ in cls.resources)
        where = f"the raw {cls.__name__} files ({files}) in {root / cls.__name__ / 'raw'}/"  # = cls.raw_folder
    elif name == "svhn":
        where = f"{datasets.SVHN.split_list[split][1]} in {root}/"
    elif name == "cifar10":
        where = (f"the folder {datasets.CIFAR10.base_folder}/ (extracted from {datasets.CIFAR10.filename}) "
                 f"in {root}/")
    else:
        files = ", ".join(f for _, _, f in datasets.CelebA.file_list if not f.endswith(".zip"))
        where = f"img_align_celeba/ and {files} in {root / datasets.CelebA.base_folder}/"
    return f"place {where} or pass --data-root DIR"


def _open_torchvision(name: str, split: str, root: Path, download: bool):
    from torchvision import datasets  # imported lazily: torchvision is slow to import

    try:
        if name == "svhn":
            return datasets.SVHN(str(root), split=split, download=download)
        if name == "celeba":
            return datasets.CelebA(str(root), split=split, target_type="attr", download=download)
        cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
        return cls(str(root), train=split == "train", download=download)
    # Offline downloads (URLError), missing files (RuntimeError) and corrupt files (ValueError, pickle and
    # scipy errors, ...) all come out of torchvision; for the user they mean the same: the files are not usable.
    except Exception as error:
        problem = (f"cannot download {name} into {root} (offline?)" if download
                   else f"{name} is not in {root} (download disabled)")
        cause = str(error).splitlines()[0] if str(error) else ""
        raise DatagenError(f"{problem}: {_placement_hint(name, split, root)} "
                           f"[{type(error).__name__}: {cause}]") from error


def _official_split(split: str) -> str:
    """The official split a datagen split comes from: dev is carved out of the official train split."""
    return "test" if split == "test" else "train"


def select_torchvision(name: str, split: str, root: Path, download: bool) -> Selection:
    ds = _open_torchvision(name, _official_split(split), root, download)
    if name == "svhn":
        images, labels = np.transpose(ds.data, (0, 2, 3, 1)), ds.labels  # SVHN keeps N×C×H×W
        class_names = tuple(str(d) for d in range(10))
    elif name == "cifar10":
        images, labels, class_names = ds.data, ds.targets, tuple(ds.classes)
    else:
        images, labels = ds.data.numpy()[..., None], ds.targets  # MNIST-style N×H×W tensors
        class_names = tuple(str(d) for d in range(10)) if name == "mnist" else tuple(ds.classes)
    labels = np.asarray(labels, dtype=np.int64)
    picked = official(labels, split)
    offset = _OFFICIAL_TRAIN_SIZES[name] if split == "test" else 0
    rule = f"the official {name} train and test splits from torchvision (test indices follow train's); {DEV_RULE}"
    return Selection(array_chunks(images, picked), labels[picked], picked + offset, class_names, rule)


def select_celeba(split: str, root: Path, download: bool) -> Selection:
    ds = _open_torchvision("celeba", _official_split(split), root, download)
    folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
    picked = official(np.zeros(len(ds.filename), dtype=np.int64), split)  # one class: every tenth train image is dev
    names = [ds.filename[i] for i in picked]
    files = [folder / name for name in names]

    def chunks() -> Iterator[torch.Tensor]:
        # Decode and conform a small batch at a time: 200k native 218×178 photos would not fit in memory.
        rows = rows_per_chunk(CELEBA_SHAPE)
        for start in range(0, len(files), rows):
            yield torch.from_numpy(np.stack([decode(p, folder, grey=False) for p in files[start:start + rows]]))

    indices = np.array([int(Path(name).stem) - 1 for name in names], dtype=np.int64)  # 000001.jpg -> 0
    rule = ("the official CelebA train and test splits (list_eval_partition.txt) from torchvision, its valid split "
            f"unused; {DEV_RULE}")
    return Selection(chunks(), np.zeros(len(files), dtype=np.int64), indices, ("celeba",), rule)
