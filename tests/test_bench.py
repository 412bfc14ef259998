"""`datagen bench train|augment`: the numbers are there, per image, and written as JSON."""

import json

import pytest

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
