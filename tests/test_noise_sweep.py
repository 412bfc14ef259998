"""`datagen bench noise` and the independent reference classifier behind it."""

import json

import pytest

from datagen import data, reference


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_the_reference_classifier_really_classifies_and_is_cached(run):
    train = data.load("digits", "train", size=8, channels=1)
    test = data.load("digits", "test", size=8, channels=1)
    ref = reference.load_or_fit(run, train, lambda: test)
    assert ref.test_accuracy > 0.85  # real 8x8 digits it never trained on
    cached = (run / reference.FILE).stat().st_mtime_ns
    again = reference.load_or_fit(run, train, lambda: pytest.fail("a cached reference must not load the test split"))
    assert again.test_accuracy == ref.test_accuracy and (run / reference.FILE).stat().st_mtime_ns == cached
    assert ref.net.features(data.to_model_input(test.images[:4])).shape == (4, 128)


def test_bench_noise_reports_each_scale_with_and_without_the_filter(cli, run, tmp_path):
    done = cli("bench", "noise", str(run), "--scales", "0,2", "--per-class", "6", "--seeds-per-class", "3",
               "--json", "noise.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "noise.json").read_text())
    rows = result["rows"]
    assert [(r["noise"], r["filter"]) for r in rows] == [(0, False), (0, True), (2, False), (2, True)]
    assert all(0 <= r["agreement"] <= 1 and len(r["agreement_per_class"]) == 10 for r in rows[0::2])
    # a 1-epoch tiny model may be too poor for the filter at any scale: then the row says the cap was hit
    assert all(r["agreement"] is None or 0 <= r["agreement"] <= 1 for r in rows[1::2])
    assert rows[0]["rejection"] == 0 and rows[2]["rejection"] == 0  # no filter, nothing rejected
    assert all(0 < r["distance_to_seed"] < 1 for r in rows[0::2])  # a 1-epoch model never copies its seed
    assert result["reference_test_accuracy"] > 0.85 and "agreement" in done.stdout


def test_bench_noise_bad_scales_are_one_line(cli, run):
    done = cli("bench", "noise", str(run), "--scales", "0,x")
    assert done.returncode == 2 and "--scales" in done.stderr and len(done.stderr.strip().splitlines()) == 1
