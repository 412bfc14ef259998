"""`datagen bench noise` and the independent reference classifier behind it."""

import dataclasses
import json
import shutil

import pytest

from datagen.bench import noise
from datagen.classify import reference
from datagen.classify.fit import predict
from datagen.data.pixels import to_model_input
from datagen.data.sources import load
from helpers import judge_every_tenth


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train", size=8, channels=1), load("digits", "test", size=8, channels=1)


@pytest.fixture
def run_with_reference(tiny_reference, tmp_path):
    """A private copy of the tiny run with its reference classifier cached (conftest fits it once per session)."""
    return shutil.copytree(tiny_reference, tmp_path / "tiny-run")


def test_the_reference_classifier_really_classifies_and_is_cached(tiny_run, tiny_reference, digits):
    train, test = digits
    assert not (tiny_run / reference.FILE).exists() and (tiny_reference / reference.FILE).is_file()  # load_or_fit cached its fit
    cached = (tiny_reference / reference.FILE).stat().st_mtime_ns
    ref = reference.load_or_fit(tiny_reference, train, lambda: pytest.fail("a cached reference must not load the test split"))
    assert (tiny_reference / reference.FILE).stat().st_mtime_ns == cached
    x = to_model_input(test.images)
    accuracy = (predict(ref.net, x) == test.labels).float().mean().item()
    assert accuracy > 0.85  # real 8x8 digits it never trained on: the loaded net, judged here
    assert ref.test_accuracy == pytest.approx(accuracy, abs=0.01)  # the accuracy recorded when it was fitted
    assert ref.net.features(x[:4]).shape == (4, 128)


def test_a_reference_fitted_on_other_data_is_not_reused(run_with_reference, digits, monkeypatch):
    train, test = digits
    fits = []
    real_fit = reference.fit_reference
    monkeypatch.setattr(reference, "fit_reference", lambda *args: fits.append(args) or real_fit(*args, steps=5))
    reference.load_or_fit(run_with_reference, train, lambda: test)
    assert fits == []  # the data it was fitted on: the cache
    fewer = dataclasses.replace(train, images=train.images[:-1], labels=train.labels[:-1], indices=train.indices[:-1])
    reference.load_or_fit(run_with_reference, fewer, lambda: test)
    assert len(fits) == 1  # the cache is keyed by the training data's fingerprint: one image less, a new fit


def test_bench_noise_reports_each_scale_with_and_without_the_filter(cli, run_with_reference, tmp_path, monkeypatch):
    judge_every_tenth(monkeypatch)
    done = cli("bench", "noise", str(run_with_reference), "--scales", "0,2", "--per-class", "6", "--seeds-per-class", "3",
               "--json", "noise.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "noise.json").read_text())
    rows = result["rows"]
    assert [(r["noise"], r["filter"]) for r in rows] == [(0, False), (0, True), (2, False), (2, True)]
    assert all(0 <= r["agreement"] <= 1 and len(r["agreement_per_class"]) == 10 for r in rows)
    assert rows[0]["rejection"] == 0 and rows[2]["rejection"] == 0  # no filter, nothing rejected
    assert rows[1]["rejection"] == pytest.approx(0.9, abs=0.02) and rows[3]["rejection"] == pytest.approx(0.9, abs=0.02)
    assert all(0 < r["distance_to_seed"] < 1 for r in rows)  # a 1-epoch model never copies its seed
    assert result["reference_test_accuracy"] > 0.85 and "agreement" in done.stdout
    assert result["settings"]["scales"] == [0, 2] and result["settings"]["per_class"] == 6


def test_a_scale_the_filter_cannot_pass_is_a_row_not_a_failure(run_with_reference, monkeypatch):
    """A 1-epoch tiny G gives the real filter nothing to accept: the filtered row says the cap was hit."""
    result = noise.sweep(run_with_reference, (2.0,), per_class=3, seeds_per_class=2, progress=False)
    off, on = result.rows
    assert (off.filter, on.filter) == (False, True)
    assert 0 <= off.agreement <= 1 and off.rejection == 0
    assert on.agreement is None and on.agreement_per_class is None and on.distance_to_seed is None
    assert on.rejection == 1.0


def test_bench_noise_bad_scales_are_one_line(cli, tiny_run):
    done = cli("bench", "noise", str(tiny_run), "--scales", "0,x")
    assert done.returncode == 2 and "--scales" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bench_noise_with_mix_grows_blends_of_two_seeds(run_with_reference, monkeypatch):
    judge_every_tenth(monkeypatch)
    plain = noise.sweep(run_with_reference, (0.0,), per_class=6, seeds_per_class=3, progress=False)
    mixed = noise.sweep(run_with_reference, (0.0,), per_class=6, seeds_per_class=3, progress=False, mix=1.0)
    assert plain.settings["mix"] == 0 and mixed.settings["mix"] == 1.0
    # at noise 0 a plain neighbour is the seed's reconstruction; a blend sits between two seeds of the class
    assert mixed.rows[0].distance_to_seed != pytest.approx(plain.rows[0].distance_to_seed)
