"""`datagen bench train|augment|scaling`: the numbers are there, per image, and written as JSON."""

import json

import pytest
import torch

from datagen import bench


def test_bench_train_counts_flops_per_image_independent_of_batch():
    small = bench.bench_train("tiny8", batch_size=4, steps=2, warmup=1)
    large = bench.bench_train("tiny8", batch_size=8, steps=2, warmup=1)
    assert small["flops_per_image"] == pytest.approx(large["flops_per_image"], rel=1e-6) and small["flops_per_image"] > 0
    for key in ("images_per_second", "achieved_gflops", "peak_gflops", "peak_rss_mb"):
        assert large[key] > 0
    assert large["fraction_of_peak"] == pytest.approx(large["achieved_gflops"] / large["peak_gflops"])


def test_bench_commands_write_json(cli, tiny_run, tmp_path):
    done = cli("bench", "train", "--recipe", "tiny8", "--steps", "2", "--json", "t.json")
    assert done.returncode == 0, done.stderr
    assert {"images_per_second", "flops_per_image", "achieved_gflops", "peak_gflops", "peak_rss_mb"} <= set(
        json.loads((tmp_path / "t.json").read_text()))
    done = cli("bench", "augment", str(tiny_run), "--per-class", "5", "--no-filter", "--json", "a.json")
    assert done.returncode == 0, done.stderr
    numbers = json.loads((tmp_path / "a.json").read_text())
    assert numbers["images"] == 50 and numbers["generator_forward_images_per_second"] > 0


def test_bench_bad_input_is_one_line(cli):
    done = cli("bench", "train", "--recipe", "no-such-recipe")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_bench_augment_of_a_recipe_runs_the_real_pipeline_on_random_seeds(tmp_path):
    numbers = bench.bench_augment(recipe_name="tiny8", per_class=20)
    assert numbers["recipe"] == "tiny8" and numbers["images"] == 200 and numbers["filter"] is False
    assert numbers["channels_last"] is True and 0 < numbers["fraction_of_generator_limit"]
    with pytest.raises(bench.DatagenError, match="not both"):
        bench.bench_augment(tmp_path, recipe_name="tiny8")


def test_bench_scaling_times_one_epoch_per_size_in_its_own_process(cli, tmp_path):
    done = cli("bench", "scaling", "--recipe", "tiny8", "--sizes", "64,128", "--json", "s.json")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "s.json").read_text())["epochs"]
    assert [r["images"] for r in rows] == [64, 128] and [r["size_ratio"] for r in rows] == [1.0, 2.0]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] >= r["peak_rss_before_epoch_mb"] > 0 for r in rows)
    done = cli("bench", "scaling", "--recipe", "tiny8", "--sizes", "8")
    assert done.returncode == 2 and "smaller than the batch size" in done.stderr


def test_bench_train_settings_are_reported_and_compile_failure_falls_back(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(bench.torch, "compile", broken)
    numbers = bench.bench_train("tiny8", batch_size=4, steps=1, warmup=0, how=bench.speed.Speed(compile=True))
    assert numbers["compile"] is True and numbers["images_per_second"] > 0
    plain = bench.bench_train("tiny8", batch_size=4, steps=1, warmup=0, how=bench.speed.Speed(channels_last=False))
    assert plain["channels_last"] is False and plain["flops_per_image"] == pytest.approx(numbers["flops_per_image"])


def test_bench_augment_with_the_filter_reports_the_filter_limit(tiny_run, monkeypatch):
    from datagen import augmentation

    # A 1-epoch tiny G gives its filter nothing to accept: this judge accepts every tenth candidate for each
    # class instead (the i-th candidate judged "is" class i mod 10), so the filtered path runs through, at a
    # known 90% rejection.
    judged = [0]

    def judge(net, x):
        classes = (judged[0] + torch.arange(len(x))) % 10
        judged[0] += len(x)
        return torch.nn.functional.one_hot(classes, 10).float()

    monkeypatch.setattr(augmentation, "probabilities", judge)
    numbers = bench.bench_augment(tiny_run, per_class=5, use_filter=True)
    assert numbers["mean_rejection"] == pytest.approx(0.9, abs=0.05)
    g, c = numbers["generator_forward_images_per_second"], numbers["classifier_forward_images_per_second"]
    assert numbers["generator_forward_batch"] in bench.LIMIT_BATCHES and numbers["classifier_forward_batch"] in bench.LIMIT_BATCHES
    assert numbers["filter_limit_images_per_second"] == pytest.approx((1 - numbers["mean_rejection"]) / (1 / g + 1 / c))
    assert numbers["cached_filter_fraction_of_filter_limit"] == pytest.approx(
        numbers["cached_filter_images_per_second"] / numbers["filter_limit_images_per_second"])
    assert set(numbers["phase_seconds"]) == {"filter_fit", "encode", "generate", "finish", "previews"}
