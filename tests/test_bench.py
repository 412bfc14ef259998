"""`datagen bench train|augment|scaling`: the numbers are there, per image, and written as JSON."""

import json
import math

import pytest
import torch

from datagen.bench import generation, measure, training
from datagen.bench.generation import bench_augment
from datagen.bench.training import bench_train
from datagen.common.errors import DatagenError
from helpers import judge_every_tenth
from datagen.model import speed


@pytest.fixture
def small_gemm(monkeypatch):
    """bench train's fp32 peak on a 256² GEMM instead of 2048² (~1/500 of the work): the same function, measured
    the same way; the command-line test below keeps the real size."""
    seen = []

    def peak(device, side=measure.GEMM_SIDE, repeats=10):
        seen.append(side)
        return measure.gemm_peak_gflops(device, side=256, repeats=repeats)

    monkeypatch.setattr(training, "gemm_peak_gflops", peak)
    return seen


def test_the_gemm_peak_is_a_rate():
    rate = measure.gemm_peak_gflops(torch.device("cpu"), side=128, repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_bench_train_counts_flops_per_image_independent_of_batch(small_gemm):
    small = bench_train("tiny8", batch_size=4, steps=2, warmup=1)
    large = bench_train("tiny8", batch_size=8, steps=2, warmup=1)
    assert small_gemm == [measure.GEMM_SIDE] * 2  # bench train asked for the peak at its real size
    assert small["flops_per_image"] == pytest.approx(large["flops_per_image"], rel=1e-6) and small["flops_per_image"] > 0
    for key in ("images_per_second", "achieved_gflops", "peak_gflops", "peak_rss_mb"):
        assert large[key] > 0
    assert large["fraction_of_peak"] == pytest.approx(large["achieved_gflops"] / large["peak_gflops"])
    assert large["achieved_gflops"] == pytest.approx(large["flops_per_image"] * large["images_per_second"] / 1e9)
    assert (large["batch_size"], large["steps"], large["warmup"]) == (8, 2, 1)


def test_bench_commands_write_json(cli, run, tmp_path):
    done = cli("bench", "train", "--recipe", "tiny8", "--steps", "2", "--json", "t.json")
    assert done.returncode == 0, done.stderr
    numbers = json.loads((tmp_path / "t.json").read_text())
    assert {"images_per_second", "flops_per_image", "achieved_gflops", "peak_gflops", "peak_rss_mb"} <= set(numbers)
    assert numbers["peak_gflops"] > 0 and "images_per_second:" in done.stdout
    done = cli("bench", "augment", str(run), "--per-class", "5", "--no-filter", "--json", "a.json")
    assert done.returncode == 0, done.stderr
    numbers = json.loads((tmp_path / "a.json").read_text())
    assert numbers["images"] == 50 and numbers["generator_forward_images_per_second"] > 0


def test_bench_bad_input_is_one_line(cli):
    done = cli("bench", "train", "--recipe", "no-such-recipe")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_bench_augment_of_a_recipe_runs_the_real_pipeline_on_random_seeds(tmp_path):
    numbers = bench_augment(recipe_name="tiny8", per_class=20)
    assert numbers["recipe"] == "tiny8" and numbers["images"] == 200 and numbers["filter"] is False
    assert numbers["channels_last"] is True and 0 < numbers["fraction_of_generator_limit"]
    with pytest.raises(DatagenError, match="not both"):
        bench_augment(tmp_path, recipe_name="tiny8")


def test_bench_scaling_times_one_epoch_per_size_in_its_own_process(cli, tmp_path):
    done = cli("bench", "scaling", "--recipe", "tiny8", "--sizes", "64,128", "--json", "s.json")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "s.json").read_text())["epochs"]
    assert [r["images"] for r in rows] == [64, 128] and [r["size_ratio"] for r in rows] == [1.0, 2.0]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] >= r["peak_rss_before_epoch_mb"] > 0 for r in rows)
    done = cli("bench", "scaling", "--recipe", "tiny8", "--sizes", "8")
    assert done.returncode == 2 and "smaller than the batch size" in done.stderr


def test_bench_train_settings_are_reported_and_compile_failure_falls_back(monkeypatch, capsys, small_gemm):
    tried = []

    def broken(*args, **kwargs):
        tried.append(args)
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(speed, "_warned", False)
    capsys.readouterr()
    numbers = bench_train("tiny8", batch_size=4, steps=1, warmup=0, how=speed.Speed(compile=True))
    assert len(tried) == 4  # E, G, D1 and D2: each tried to compile, each failed ...
    assert "no compiler here" in capsys.readouterr().err  # ... said so once ...
    assert numbers["compile"] is True and numbers["images_per_second"] > 0  # ... and the steps ran eagerly
    assert numbers["warmup"] == 1  # a compiled step is never timed cold: at least one warm-up step
    plain = bench_train("tiny8", batch_size=4, steps=1, warmup=0, how=speed.Speed(channels_last=False))
    assert len(tried) == 4 and plain["warmup"] == 0
    assert plain["channels_last"] is False and plain["flops_per_image"] == pytest.approx(numbers["flops_per_image"])


def test_bench_augment_with_the_filter_reports_the_filter_limit(run, monkeypatch):
    judge_every_tenth(monkeypatch)
    numbers = bench_augment(run, per_class=5, use_filter=True)
    assert numbers["mean_rejection"] == pytest.approx(0.9, abs=0.05)
    g, c = numbers["generator_forward_images_per_second"], numbers["classifier_forward_images_per_second"]
    assert numbers["generator_forward_batch"] in generation.LIMIT_BATCHES
    assert numbers["classifier_forward_batch"] in generation.LIMIT_BATCHES
    assert numbers["filter_limit_images_per_second"] == pytest.approx((1 - numbers["mean_rejection"]) / (1 / g + 1 / c))
    assert numbers["cached_filter_fraction_of_filter_limit"] == pytest.approx(
        numbers["cached_filter_images_per_second"] / numbers["filter_limit_images_per_second"])
    assert set(numbers["phase_seconds"]) == {"filter_fit", "encode", "generate", "finish", "previews"}
    assert not (run / "filters").exists()  # the bench fits its filter in a copy: the run's own cache is untouched
