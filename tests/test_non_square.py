"""Non-square and mixed-size images: --crop center and --pad square each image, and the run records the choice."""

import json

import h5py
import numpy as np
import pytest
import torch
from helpers import png_folder
from PIL import Image

from datagen.bench import noise
from datagen.common.errors import DatagenError
from datagen.data import folders, sources
from datagen.data.conform import check_safe_to_conform, conform, square_mode
from datagen.data.sources import load, probe
from datagen.eval import downstream, protocol as ev
from datagen.generate import augment as aug
from datagen.model import checkpoint
from datagen.store.inspect import inspect
from datagen.tools.inputs import load_split, open_run
from datagen.train import loop as training

GREY, WHITE = 100, 255
MIXED = [(12, 20), (20, 12), (16, 16)]  # H×W of the training folder's images, in turn


def _wide_with_white_centre(root, count=5):
    """One class of 20×40 (H×W) grey images whose centre 20×20 square is white."""
    (root / "a").mkdir(parents=True)
    pixels = np.full((20, 40), GREY, dtype=np.uint8)
    pixels[:, 10:30] = WHITE
    for i in range(count):
        Image.fromarray(pixels).save(root / "a" / f"{i}.png")
    return root


def _mixed_folder(root, per_class=30, run=1):
    """Two classes of random grey images whose sizes cycle through MIXED, `run` images of each size in turn."""
    rng = np.random.default_rng(0)
    for name in ("bar", "ring"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = MIXED[i // run % len(MIXED)]
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def padded_run(tmp_path_factory):
    """A 1-epoch tiny8 run trained with square="pad" on a mixed-size folder (shared read-only)."""
    tmp = tmp_path_factory.mktemp("padded")
    folder = _mixed_folder(tmp / "photos")
    out = tmp / "run"
    plan = training.prepare(training.TrainOptions(dataset=str(folder), recipe="tiny8", batch_size=16, epochs=1, out=out,
                                                  progress=False, square="pad"))
    assert training.fit(plan).status == "completed"
    return out, folder


def test_crop_keeps_the_centre_and_pad_adds_black_bars(tmp_path):
    root = _wide_with_white_centre(tmp_path / "wide")
    cropped = load(str(root), size=20, channels=1, square="crop").images[..., 0]
    assert (cropped == WHITE).all()  # the centre square, nothing of the grey sides
    padded = load(str(root), size=40, channels=1, square="pad").images[..., 0]
    assert (padded[:, :10] == 0).all() and (padded[:, 30:] == 0).all()  # black bars at top and bottom
    assert (padded[:, 10:30, :10] == GREY).all() and (padded[:, 10:30, 10:30] == WHITE).all()  # the whole image, centred
    small = load(str(root), size=8, channels=1, square="pad").images[..., 0]  # then resized as ever
    assert (small[:, 0] == 0).all() and (small[:, -1] == 0).all() and (small[:, 4, 4] == WHITE).all()


def test_without_a_choice_non_square_and_mixed_images_are_refused_naming_both_options(tmp_path):
    with pytest.raises(DatagenError, match=r"20x40 .*--crop center.*--pad"):
        check_safe_to_conform("wide", (20, 40, 1), 8, 1, None)
    mixed = _mixed_folder(tmp_path / "mixed", per_class=3)
    with pytest.raises(DatagenError, match=r"mixed image sizes .*--crop center.*--pad"):
        load(str(mixed), size=8, channels=1)


def test_mixed_sizes_are_squared_one_by_one_in_bounded_chunks(tmp_path, monkeypatch):
    root = _mixed_folder(tmp_path / "mixed", per_class=9, run=3)
    files = sorted(root.rglob("*.png"))
    monkeypatch.setattr(folders, "rows_per_chunk", lambda shape: 2)  # a chunk ends at a size change or after 2 rows
    chunks, gather = [], sources.gather

    def spy(selected, *args):
        selected = list(selected)
        chunks.extend(len(chunk) for chunk in selected)
        return gather(iter(selected), *args)

    monkeypatch.setattr(sources, "gather", spy)
    for square in ("crop", "pad"):
        seen = []
        loaded = load(str(root), "train", size=8, channels=1, square=square, progress=lambda done, n: seen.append(done))
        assert loaded.images.shape == (len(loaded), 8, 8, 1) and seen[-1] == len(loaded) == 16
        for image, index in zip(loaded.images, loaded.indices.tolist()):
            native = torch.from_numpy(np.array(Image.open(files[index])))[None, ..., None]
            assert torch.equal(image, conform(native, 8, 1, square=square)[0])
    assert max(chunks) == 2 and sum(chunks) == 32  # same-size neighbours share a chunk, within the bound


def test_the_upscaling_guard_judges_the_squared_side(tmp_path):
    check_safe_to_conform("wide", (20, 40, 1), 48, 1, None, "pad")  # padded to 40: 48 is less than 2x
    with pytest.raises(DatagenError, match="20x20 once squared, too small"):
        check_safe_to_conform("wide", (20, 40, 1), 48, 1, None, "crop")  # cropped to 20: 48 is more than 2x
    mixed = _mixed_folder(tmp_path / "mixed", per_class=3)
    assert probe(str(mixed), square="crop") == (12, 12, 1)  # the smallest image once squared
    assert probe(str(mixed), square="pad") == (16, 16, 1)


def test_the_api_names_a_bad_choice():
    with pytest.raises(DatagenError, match="square must be 'crop' or 'pad'"):
        load("digits", size=8, channels=1, square="stretch")


def test_other_sources_square_too(tmp_path):
    with h5py.File(tmp_path / "wide.h5", "w") as f:
        f["images"] = np.full((5, 20, 40, 3), 7, dtype=np.uint8)
        f["labels"] = np.zeros(5, dtype=np.int64)
    padded = load(str(tmp_path / "wide.h5"), size=40, channels=3, square="pad").images
    assert padded.shape == (4, 40, 40, 3) and (padded[:, :10] == 0).all() and (padded[:, 10:30] == 7).all()
    assert probe(str(tmp_path / "wide.h5"), square="pad") == (40, 40, 3)


@pytest.mark.parametrize(("crop", "pad", "message"), [
    ("middle", False, "--crop takes only 'center'"), ("center", True, "exclude each other")])
def test_bad_choices_are_one_line(cli, tmp_path, crop, pad, message):
    with pytest.raises(DatagenError, match=message):
        square_mode(crop, pad)
    done = cli("train", "digits", "--recipe", "tiny8", "--crop", crop, *(["--pad"] if pad else []), "--out", "r")
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_train_with_pad_records_it_and_augment_loads_the_run_data_the_same_way(cli, tmp_path):
    folder = _mixed_folder(tmp_path / "photos")
    refused = cli("train", "photos", "--recipe", "tiny8", "--batch-size", "16", "--epochs", "1", "--out", "r")
    assert refused.returncode == 2 and "--crop center" in refused.stderr and not (tmp_path / "r").exists()
    done = cli("train", "photos", "--recipe", "tiny8", "--pad", "--batch-size", "16", "--epochs", "1", "--out", "r")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r" / "dataset.json").read_text())["square"] == "pad"
    assert checkpoint.load(tmp_path / "r" / "checkpoints" / "last.pt")["dataset"]["square"] == "pad"
    grown = cli("augment", "r", "--per-class", "2", "--no-filter", "--include-seeds", "--seeds-per-class", "2",
                "--out", "a.h5")
    assert grown.returncode == 0, grown.stderr  # a mixed-size folder: loading it unsquared would be refused
    provenance = inspect(tmp_path / "a.h5").provenance
    assert provenance["square"] == "pad"
    padded = load(str(folder), size=8, channels=1, square="pad")
    with h5py.File(tmp_path / "a.h5") as f:
        real = f["real"][:]
        seeds, seed_index = f["images"][real], f["seed_index"][real]
    position = {int(i): p for p, i in enumerate(padded.indices.tolist())}
    assert np.array_equal(seeds, padded.images[[position[int(i)] for i in seed_index]].numpy())  # as training saw them
    other = cli("augment", "r", "--per-class", "2", "--no-filter", "--crop", "center", "--out", "b.h5")
    assert other.returncode == 2 and "squared with --pad in training" in other.stderr  # G learnt them padded


def test_a_resumed_run_keeps_its_choice(padded_run):
    out, _ = padded_run
    assert training.prepare(training.TrainOptions(out=out, resume=True, epochs=2)).square == "pad"
    with pytest.raises(DatagenError, match="trained with --pad, which resuming must keep"):
        training.prepare(training.TrainOptions(out=out, resume=True, epochs=2, square="crop"))


def test_evaluate_bench_noise_and_the_tools_load_the_run_data_as_training_did(padded_run, tmp_path, monkeypatch):
    out, folder = padded_run  # a mixed-size folder: loading it unsquared would be refused
    result = ev.evaluate(ev.EvaluateOptions(runs=(out,), labels_per_class=(2,), repeats=1, arms=("real",), quality=False,
                                            classifier=downstream.Recipe(steps=5, width=8), json_path=tmp_path / "e.json",
                                            progress=False, device="cpu"))
    assert result.config["square"] == "pad" and result.config["train_images"] == 44
    train, test = (load(str(folder), split, size=8, channels=1, square="pad").images for split in ("train", "test"))
    assert torch.equal(load_split(open_run(out, "cpu"), None, "test").images, test)

    def reference_fit(folder, seeds, load_test):  # what the sweep loaded, without fitting its slow reference classifier
        assert torch.equal(seeds.images, train) and torch.equal(load_test().images, test)
        raise StopIteration

    monkeypatch.setattr(noise.reference, "load_or_fit", reference_fit)
    with pytest.raises(StopIteration):
        noise.sweep(out, (0.0,), progress=False)


def test_runs_from_before_the_choice_read_as_no_squaring(run, tmp_path):
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    del state["dataset"]["square"]  # as a checkpoint written before the choice was recorded
    checkpoint.save(run / "checkpoints" / "last.pt", state)
    assert training.prepare(training.TrainOptions(out=run, resume=True, epochs=2)).square is None
    result = aug.augment(aug.AugmentOptions(run=run, per_class=2, seeds_per_class=1, filter=False, out=tmp_path / "o.h5",
                                            include_unlabeled=False, progress=False))
    assert result.counts == [2] * 10 and inspect(tmp_path / "o.h5").provenance["square"] is None


def test_augment_seeds_from_another_non_square_folder_take_their_own_choice(cli, run, tmp_path):
    png_folder(tmp_path / "wide", {"a": 3, "b": 3}, (8, 12))  # the run (digits) was trained without a choice
    refused = cli("augment", str(run), "--per-class", "2", "--seeds", "wide", "--out", "x.h5")
    assert refused.returncode == 2 and "--crop center" in refused.stderr and "--pad" in refused.stderr
    done = cli("augment", str(run), "--per-class", "2", "--seeds", "wide", "--crop", "center", "--out", "x.h5")
    assert done.returncode == 0, done.stderr
    assert inspect(tmp_path / "x.h5").provenance["square"] == "crop"
