"""A resume continues exactly what was started: settings that change the numbers are recorded and kept."""

import pytest

from datagen.common.errors import DatagenError
from datagen.generate.augment import AugmentOptions, augment
from datagen.model import checkpoint
from datagen.train import loop as training
from datagen.train.rundir import read_metrics


def _aug(run, out, **kw):
    base = dict(run=run, per_class=6, seeds_per_class=3, filter=False, out=out, batch_size=4, progress=False,
                unlabeled=False)
    return AugmentOptions(**{**base, **kw})


@pytest.mark.parametrize(("change", "named"), [
    ({"batch_size": 5}, "--batch-size"),
    ({"include_seeds": True}, "--include-seeds"),
    ({"unlabeled": True}, "unlabeled"),
    ({"channels_last": False}, "--channels-last"),
])
def test_augment_resume_refuses_settings_that_change_the_images(run, tmp_path, change, named):
    out = tmp_path / "a.h5"
    augment(_aug(run, out))
    with pytest.raises(DatagenError, match=named):
        augment(_aug(run, out, resume=True, **change))


def test_augment_resume_refuses_to_add_or_drop_the_unlabeled_images(run, tmp_path):
    out = tmp_path / "a.h5"
    augment(_aug(run, out, unlabeled=True, include_unlabeled=False))
    with pytest.raises(DatagenError, match="--include-unlabeled"):
        augment(_aug(run, out, unlabeled=True, include_unlabeled=True, resume=True))


def test_an_output_from_before_include_unlabeled_resumes_only_without_it(run, tmp_path):
    import h5py
    import json

    out = tmp_path / "a.h5"
    augment(_aug(run, out, unlabeled=True, include_unlabeled=False))
    with h5py.File(out, "r+") as f:  # as the previous version wrote it: no include_unlabeled recorded
        provenance = json.loads(f.attrs["provenance"])
        del provenance["include_unlabeled"]
        f.attrs["provenance"] = json.dumps(provenance)
    with pytest.raises(DatagenError, match="include_unlabeled = false"):
        augment(_aug(run, out, unlabeled=True, resume=True))  # today's default would add the unlabeled images
    augment(_aug(run, out, unlabeled=True, include_unlabeled=False, resume=True))


def test_a_resume_whose_spread_labels_came_out_otherwise_is_refused(run, tmp_path, monkeypatch):
    """Another device may tip a borderline image into another class: the real rows per class would then no longer
    be what the output holds, so the generated counts would be off; the resume is refused by name instead."""
    import torch

    from datagen.generate import augment as aug

    out = tmp_path / "a.h5"
    augment(_aug(run, out, unlabeled=True, include_unlabeled=True, per_class=3))
    original = aug.spread_labels

    def tipped(model, z_seeds, seed_labels, z_rest, n_classes):
        labels, confidence, owner = original(model, z_seeds, seed_labels, z_rest, n_classes)
        labels[0] = (labels[0] + 1) % n_classes
        owner[0] = int(torch.nonzero(seed_labels.cpu() == labels[0])[0])
        return labels, confidence, owner

    monkeypatch.setattr(aug, "spread_labels", tipped)
    with pytest.raises(DatagenError, match="real_rows"):
        augment(_aug(run, out, unlabeled=True, include_unlabeled=True, per_class=3, resume=True))


def test_augment_resume_refuses_another_unlabeled_pool(run, tmp_path):
    out = tmp_path / "a.h5"
    augment(_aug(run, out, unlabeled=True, unlabeled_indices=tuple(range(0, 600))))
    with pytest.raises(DatagenError, match="unlabeled_pool"):
        augment(_aug(run, out, unlabeled=True, unlabeled_indices=tuple(range(0, 700)), resume=True))


def _opts(out, **kw):
    base = dict(dataset="digits", recipe="tiny8", overrides=["train.log_every=5"], epochs=2, out=out, progress=False)
    return training.TrainOptions(**{**base, **kw})


def _steps(run):
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl") if "event" not in r]


def test_train_resume_keeps_the_runs_layout_and_refuses_another(tmp_path):
    """A run trained in the contiguous layout resumes in it (the CPU default is channels_last, which rounds
    differently): the resumed steps equal an uninterrupted run's; asking for another layout is refused."""
    straight = training.fit(training.prepare(_opts(tmp_path / "straight", channels_last=False)))
    training.fit(training.prepare(_opts(tmp_path / "split", channels_last=False, epochs=1)))
    state = checkpoint.load(tmp_path / "split" / "checkpoints" / "last.pt")
    assert state["execution"] == {"device": "cpu", "channels_last": False, "compile": False, "amp": False}
    with pytest.raises(DatagenError, match="channels_last = False"):
        training.prepare(_opts(tmp_path / "split", dataset=None, recipe=None, resume=True, channels_last=True))
    resumed = training.fit(training.prepare(_opts(tmp_path / "split", dataset=None, recipe=None, resume=True)))
    assert straight.status == resumed.status == "completed"
    assert _steps(tmp_path / "straight") == _steps(tmp_path / "split")
