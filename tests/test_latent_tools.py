"""The latent-space tools (issue 5): pictures, their numbers, IMAGE specs, bad input, selfexgan and bigan runs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datagen.cli.latent import LATEST, split_run
from datagen.common.errors import DatagenError
from datagen.data.pixels import to_model_input
from datagen.data.sources import load
from datagen.generate.neighbours import DEFAULT_NOISE
from datagen.model import checkpoint
from datagen.model.latent import slerp
from datagen.tools.embed import _knn_accuracy, embed
from datagen.tools.figures import chain, explore, interpolate, reconstruct, sample
from datagen.tools.similarity import _auc, _best_threshold, _pairs, similarity, similarity_benchmark
from datagen.train import loop as training, rundir

# Tests that let a tool write its default RUN/figures/ use `run` (conftest: a private copy of the tiny run); tests
# that only read a run use `tiny_run` itself, which conftest checks is left as it was.


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    """The shared selfexgan run and a 1-epoch bigan run (no D1) of the same nets, both read only."""
    bigan = tmp_path_factory.mktemp("latent") / "bigan"
    training.fit(training.prepare(training.TrainOptions(dataset="digits", recipe="tiny8", epochs=1, out=bigan,
                                                        overrides=["model=bigan"], progress=False)))
    return {"selfexgan": tiny_run, "bigan": bigan}


def _grid(path):
    """(rows, columns) of an 8x8-tile torchvision grid (2-pixel padding)."""
    w, h = Image.open(path).size
    return (h - 2) // 10, (w - 2) // 10


def _model_and_test(run):
    model = checkpoint.load_model(checkpoint.load(rundir.checkpoint_of(run)))  # in eval mode, as the tools use it
    return model, load("digits", "test", size=8, channels=1)


def _png(path, shape):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("kind", ["selfexgan", "bigan"])
def test_every_tool_draws_its_grid_on_any_run(runs, kind, tmp_path):
    run = runs[kind]
    assert _grid(reconstruct(run, n=10, out=tmp_path / "r.png").path) == (4, 8)  # 2 pairs of rows, padded
    assert _grid(sample(run, n=16, out=tmp_path / "s.png").path) == (2, 8)
    assert _grid(chain(run, images=["digits:0", "digits:1"], steps=3, out=tmp_path / "c.png").path) == (2, 4)
    assert _grid(similarity(run, image_a="digits:0", image_b="digits:7", neighbours=5, out=tmp_path / "m.png").path) == (2, 6)
    assert _grid(explore(run, image="digits:0", scales=(0.1, 0.5), n=4, out=tmp_path / "e.png").path) == (2, 5)
    assert _grid(interpolate(run, image_a="digits:0", image_b="digits:7", steps=5, out=tmp_path / "i.png").path) == (1, 7)
    embedded = embed(run, method="pca", n=50, out=tmp_path / "p.png")
    assert embedded.path.is_file() and embedded.points == 50 and 0 <= embedded.knn_accuracy <= 1


def test_reconstruction_errors_are_those_of_the_named_images(run):
    result = reconstruct(run, n=6, seed=3)
    assert result.path.parent == run / "figures" and result.path.is_file()
    model, test = _model_and_test(run)
    at = [int(s.split(":")[1]) for s in result.sources]
    assert all(s.startswith("digits:") for s in result.sources) and len(set(at)) == 6
    with torch.inference_mode():
        x = to_model_input(test.images[at])
        expected = ((x - model.decode(model.encode(x))).abs().flatten(1).mean(1) / 2).tolist()
    assert result.errors == pytest.approx(expected, abs=1e-6)
    assert result.mean_error == pytest.approx(np.mean(expected), abs=1e-6)


def test_chain_starts_with_the_reconstruction(tiny_run, tmp_path):
    chained = chain(tiny_run, images=["digits:4", "digits:40"], steps=5, out=tmp_path / "c.png")
    rebuilt = reconstruct(tiny_run, images=["digits:4", "digits:40"], out=tmp_path / "r.png")
    assert [len(d) for d in chained.distance] == [5, 5]
    assert [d[0] for d in chained.distance] == pytest.approx(rebuilt.errors, abs=1e-6)


def test_similarity_is_one_for_an_image_and_itself_and_symmetric(tiny_run, tmp_path):
    same = similarity(tiny_run, image_a="digits:3", image_b="digits:3", out=tmp_path / "a.png")
    assert same.score == pytest.approx(1.0, abs=1e-5) and same.code_cosine == pytest.approx(1.0, abs=1e-5)
    ab = similarity(tiny_run, image_a="digits:3", image_b="digits:200", out=tmp_path / "b.png")
    ba = similarity(tiny_run, image_a="digits:200", image_b="digits:3", out=tmp_path / "c.png")
    assert ab.score == pytest.approx(ba.score, abs=1e-5) and -1 <= ab.score < 0.9999
    assert ab.noise == DEFAULT_NOISE == 0.5


def test_similarity_pairs_are_same_and_different_class(tiny_run):
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    same, different = _pairs(labels, 50, seed=1)
    assert (labels[same[:, 0]] == labels[same[:, 1]]).all() and (same[:, 0] != same[:, 1]).all()
    assert (labels[different[:, 0]] != labels[different[:, 1]]).all()
    bench = similarity_benchmark(tiny_run, pairs=20)
    summary = bench.summary()
    assert len(bench.same) == len(bench.different) == 20
    assert 0 <= summary["score"]["auc"] <= 1 and 0.5 <= summary["code_cosine"]["threshold_accuracy"] <= 1


def test_auc_and_threshold_on_known_scores():
    assert _auc([0.9, 0.8], [0.1, 0.2]) == 1.0 and _auc([0.1], [0.9]) == 0.0 and _auc([0.5], [0.5]) == 0.5
    assert _best_threshold([0.9, 0.8], [0.1, 0.2]) == (0.8, 1.0)


def test_explore_at_zero_noise_is_the_reconstruction_and_a_seed_repeats(tiny_run, tmp_path):
    explored = explore(tiny_run, image="digits:9", scales=(0.0, 1.0), n=3, out=tmp_path / "a.png")
    assert explored.distance[0] == pytest.approx(reconstruct(tiny_run, images=["digits:9"], out=tmp_path / "r.png").errors[0], abs=1e-6)
    again = explore(tiny_run, image="digits:9", scales=(0.0, 1.0), n=3, out=tmp_path / "b.png")
    other = explore(tiny_run, image="digits:9", scales=(0.0, 1.0), n=3, seed=1, out=tmp_path / "c.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    assert again.distance == explored.distance != other.distance


def test_sample_depends_on_the_seed_only(tiny_run, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        sample(tiny_run, n=8, seed=seed, out=tmp_path / f"{name}.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes() != (tmp_path / "c.png").read_bytes()


@pytest.mark.parametrize("center", [0.0, 0.5])
def test_slerp_stays_on_the_sphere_in_equal_angles(center):
    gen = torch.Generator().manual_seed(0)
    a, b = (center + 3 * torch.nn.functional.normalize(torch.randn(2, 6, generator=gen), dim=1)).unbind()
    arc = slerp(a, b, torch.linspace(0, 1, 5), center)
    assert torch.allclose(arc[0], a, atol=1e-5) and torch.allclose(arc[-1], b, atol=1e-5)
    assert torch.allclose((arc - center).norm(dim=1), torch.full((5,), 3.0), atol=1e-5)
    u = torch.nn.functional.normalize(arc - center, dim=1)
    steps = torch.arccos((u[:-1] * u[1:]).sum(1).clamp(-1, 1))
    assert torch.allclose(steps, steps[0].expand(4), atol=1e-4)


def test_interpolating_an_image_with_itself_has_no_angle(tiny_run, tmp_path):
    result = interpolate(tiny_run, image_a="digits:2", image_b="digits:2", out=tmp_path / "i.png")
    assert result.angle_degrees == pytest.approx(0.0, abs=0.1) and _grid(result.path) == (1, 10)


def test_embed_reports_separation_against_pixels_and_chance(run):
    result = embed(run, method="tsne", n=60, seed=0)
    assert result.path == run / "figures" / "embed-tsne-digits.png" and result.path.is_file()
    assert (result.train_images, result.test_images) == (1302, 355)  # digits' train split excludes its 140 dev
    assert result.pixel_knn_accuracy > 0.9  # k-NN on digits' pixels: fitted on train, scored on test, labels aligned
    assert result.chance == pytest.approx(0.1, abs=0.01) and 0 <= result.knn_accuracy <= 1


def test_knn_accuracy_on_separable_and_on_mixed_codes():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    codes = torch.randn(40, 3, generator=gen) * 0.1 + labels[:, None] * 5.0
    assert _knn_accuracy(codes[:30], labels[:30], codes[30:], labels[30:], 3) == 1.0
    assert _knn_accuracy(codes[:30], labels[:30], codes[30:], 1 - labels[30:], 3) == 0.0


def test_image_files_of_another_size_or_colour_are_converted(tiny_run, tmp_path):
    rgb = _png(tmp_path / "rgb.png", (16, 16, 3))
    grey = _png(tmp_path / "grey.png", (8, 8))
    result = reconstruct(tiny_run, images=[rgb, grey, "digits:1"], out=tmp_path / "r.png")
    assert len(result.errors) == 3 and result.sources == [rgb, grey, "digits:1"]


@pytest.mark.parametrize(("image", "message"), [
    ("missing.png", "no image file missing.png"), ("digits", "is a dataset"), ("digits:355", "INDEX from 0 to 354"),
    ("nosuch:3", "no such dataset"), ("wide", "square"), ("small", "too small"), ("garbage", "cannot read image"),
    ("", "empty IMAGE")])
def test_bad_images_are_named(tiny_run, tmp_path, image, message):
    files = {"wide": ((8, 12), ".png"), "small": ((3, 3), ".png")}
    if image in files:
        image = _png(tmp_path / f"{image}{files[image][1]}", files[image][0])
    elif image == "garbage":
        image = str(tmp_path / "garbage.png")
        (tmp_path / "garbage.png").write_text("not an image")
    with pytest.raises(DatagenError, match=message):
        explore(tiny_run, image=image, out=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_out_may_be_a_folder_but_not_another_format(tiny_run, tmp_path):
    assert sample(tiny_run, n=4, out=tmp_path).path == tmp_path / "sample-seed0.png"
    with pytest.raises(DatagenError, match=r"\.png"):
        sample(tiny_run, n=4, out=tmp_path / "s.jpg")
    (tmp_path / "file").write_text("")
    with pytest.raises(DatagenError, match="choose a writable --out"):
        sample(tiny_run, n=4, out=tmp_path / "file" / "s.png")


def test_the_first_argument_is_a_run_only_when_it_can_be_one(tiny_run):
    assert split_run(["a.png", "b.png"], 2, 2, "u") == (LATEST, ["a.png", "b.png"])
    assert split_run([str(tiny_run), "digits:1"], 1, None, "u") == (tiny_run, ["digits:1"])
    assert split_run(["gone", "a", "b"], 2, 2, "u") == (Path("gone"), ["a", "b"])
    assert split_run(["x.pt", "a"], 1, None, "u")[0].name == "x.pt"
    for args in ([str(tiny_run)], ["a"], ["a", "b", "c", "d"]):
        with pytest.raises(DatagenError, match="usage: datagen"):
            split_run(args, 2, 2, "similarity [RUN] IMAGE_A IMAGE_B")


def test_commands_print_only_the_path_and_default_to_runs_latest(cli, run, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(run, target_is_directory=True)
    for args in (["reconstruct", "--n", "8"], ["sample", "--n", "4"], ["chain", "digits:1", "--steps", "2"],
                 ["similarity", "digits:1", "digits:2"], ["explore", "digits:1"], ["interpolate", "digits:1", "digits:2"],
                 ["embed", "--method", "pca", "--n", "20"]):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        printed = done.stdout.strip().splitlines()
        assert len(printed) == 1 and printed[0].startswith("runs/latest/figures/") and (tmp_path / printed[0]).is_file()
    assert "5-NN accuracy on E's codes" in done.stderr  # the last command, embed


@pytest.mark.parametrize(("args", "message"), [
    (["explore", "{run}", "missing.png"], "no image file"),
    (["similarity", "{run}", "digits:1"], "usage: datagen similarity"),
    (["chain", "{tmp}/nowhere.pt", "digits:1"], "no checkpoint"),
    (["sample", "{tmp}/no-run"], "no checkpoint"),
    (["explore", "{run}", "digits:1", "--scales", "a,b"], "--scales"),
    (["explore", "{run}", "digits:1", "--scales", "-1"], "--scales"),
    (["embed", "{run}", "--method", "umap"], "--method"),
    (["reconstruct", "{run}", "--images", "digits:5000"], "INDEX from 0"),
    (["interpolate", "{run}", "digits:1", "digits:2", "--steps", "1"], "--steps"),
    (["sample", "{run}", "--out", "{tmp}/x.jpg"], ".png"),
])
def test_bad_input_is_one_line_and_exit_2(cli, tiny_run, tmp_path, args, message):
    done = cli(*(a.format(run=tiny_run, tmp=tmp_path) for a in args))
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
    err = done.stderr
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err


def test_a_command_end_to_end(cli, run):
    """The real entry point: path on stdout, numbers on stderr; a missing image is one line, exit 2."""
    done = cli("explore", str(run), "digits:5", "--scales", "0.2,0.8", "--n", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run / "figures" / "explore-digits-5.png") and _grid(done.stdout.strip()) == (2, 4)
    assert "σ 0.2" in done.stderr
    missing = cli("similarity", str(run), "digits:1", "nowhere.png")
    assert missing.returncode == 2 and "no image file nowhere.png" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    assert missing.stdout == ""
