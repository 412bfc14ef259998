"""A datagen output used as data (augment --seeds, train) is all train: nothing is held back as a test split."""

import numpy as np
import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.data.sources import load
from datagen.store.writers import open_writer


def _output(path, fmt, n=25, finish=True):
    with open_writer(path, fmt, image_shape=(8, 8, 1), class_names=["a", "b"], provenance={}) as writer:
        images = torch.arange(n * 64, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(n, 8, 8, 1)
        writer.write(images, torch.arange(n) % 2, torch.arange(n), torch.zeros(n, dtype=torch.bool))
        if finish:
            writer.finish()
    return path


@pytest.mark.parametrize("fmt", ["hdf5", "imagefolder"])
def test_every_image_of_an_output_is_train(tmp_path, fmt):
    """Before: the every-fifth test split applied, so 5 of these 25 images silently disappeared."""
    out = _output(tmp_path / ("o.h5" if fmt == "hdf5" else "o"), fmt)
    train, test = load(str(out), "train", size=8, channels=1), load(str(out), "test", size=8, channels=1)
    assert len(train) == 25 and len(test) == 0
    assert np.bincount(train.labels.numpy()).tolist() == [13, 12]
    assert "datagen output" in train.split_rule


def test_an_unfinished_imagefolder_output_is_refused_as_data(tmp_path):
    out = _output(tmp_path / "o", "imagefolder", finish=False)
    with pytest.raises(DatagenError, match="incomplete"):
        load(str(out), "train", size=8, channels=1)


def test_evaluate_refuses_a_run_whose_data_has_no_test_split(cli, tmp_path):
    out = _output(tmp_path / "o.h5", "hdf5", n=64)
    assert cli("train", str(out), "--recipe", "tiny8", "--batch-size", "16", "--epochs", "1", "--out", "r").returncode == 0
    done = cli("evaluate", "--run", "r", "--labels-per-class", "1", "--repeats", "1", "--no-quality")
    assert done.returncode == 2 and "no test split" in done.stderr
