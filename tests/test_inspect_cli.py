"""`datagen inspect`: summary and verification of a generated dataset, from the command line."""

import numpy as np
import pytest

from datagen.store.writers import open_writer


def _output(path, fmt, *, finish=True, names=("zero", "one")):
    writer = open_writer(path, fmt, image_shape=(8, 8, 1), class_names=list(names),
                               provenance={"noise": 0.3, "source": "digits"})
    writer.write(np.full((6, 8, 8, 1), 7, np.uint8), np.array([0, 1, 0, 1, 0, 0]), np.arange(6), np.array([True] + [False] * 5))
    if finish:
        writer.finish()
    writer.close()
    return path


@pytest.mark.parametrize("fmt", ["hdf5", "imagefolder"])
def test_a_finished_output_is_summarised_and_verified(cli, tmp_path, fmt):
    path = _output(tmp_path / ("out.h5" if fmt == "hdf5" else "out"), fmt, names=("zero", "[bold]one"))
    done = cli("inspect", str(path))
    assert done.returncode == 0, done.stderr
    assert "verified: no problems found" in done.stdout
    assert "[bold]one" in done.stdout  # class names are shown as they are, not read as markup
    assert "noise: 0.3" in done.stdout and "complete: True" in done.stdout
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in done.stdout.splitlines() if line.count("│") == 4}
    assert rows["zero"] == "4" and rows["total"] == "6"


def test_an_unfinished_output_fails_naming_the_problem(cli, tmp_path):
    path = _output(tmp_path / "out", "imagefolder", finish=False)
    done = cli("inspect", str(path))
    assert done.returncode == 1
    assert "problem: incomplete" in done.stderr and "Traceback" not in done.stderr


def test_a_damaged_png_is_named(cli, tmp_path):
    path = _output(tmp_path / "out", "imagefolder")
    victim = sorted((path).rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:20])
    done = cli("inspect", str(path))
    assert done.returncode == 1 and victim.name in done.stderr


def test_not_an_output_is_bad_input(cli, tmp_path):
    (tmp_path / "plain.txt").write_text("hello")
    for target in ("missing.h5", "plain.txt"):
        done = cli("inspect", target)
        assert done.returncode == 2 and done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
