"""A full disk (simulated with the file size limit, `ulimit -f`): train, augment and evaluate stop with one line
naming the file, exit 1, never a segfault; what was written before stays, and --resume completes it exactly."""

import resource
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import DATAGEN

from datagen.store.inspect import inspect

PER_CLASS = 400  # digits: 4000 images, an HDF5 output of about 2 MB while streaming


def _limited(kib: int):
    """A preexec_fn capping every file the child writes at `kib` KiB; Python ignores SIGXFSZ, so writes fail EFBIG."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (kib << 10, resource.RLIM_INFINITY))


def _datagen(cwd, kib: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DATAGEN), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limited(kib))


def _one_line_naming(done: subprocess.CompletedProcess, name: str) -> None:
    assert done.returncode == 1, done.stderr  # not 139 (segfault) nor killed by SIGXFSZ
    last = done.stderr.strip().splitlines()[-1]  # train says what it resumes first
    assert last.startswith("error: cannot write") and name in last and "--resume" in last, done.stderr
    assert done.stderr.count("error") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(("fmt", "limits"), [("hdf5", (40, 500, 800)), ("imagefolder", (40, 600)),
                                             ("webdataset", (40, 600))])
def test_augment_on_a_full_disk_resumes_to_exact_counts(cli, tiny_run, tmp_path, fmt, limits):
    out = tmp_path / ("out.h5" if fmt == "hdf5" else "out")
    args = ("augment", str(tiny_run), "--per-class", str(PER_CLASS), "--no-filter", "--format", fmt, "--out", str(out))
    for kib in limits:
        done = _datagen(tmp_path, kib, *args, *(("--resume",) if out.exists() else ()))
        _one_line_naming(done, out.name)
        if out.exists():
            report = inspect(out)
            assert not report.complete and sum(report.counts) < 10 * PER_CLASS
    assert cli(*args, "--resume").returncode == 0
    report = inspect(out)
    assert report.complete and report.counts == [PER_CLASS] * 10 and not report.problems
    if fmt == "hdf5":  # the same rows as an output written in one go
        assert cli(*args[:-1], str(tmp_path / "whole.h5")).returncode == 0
        with h5py.File(out) as resumed, h5py.File(tmp_path / "whole.h5") as whole:
            for name in ("images", "labels", "latent"):
                assert np.array_equal(resumed[name][:], whole[name][:])


def test_hdf5_packing_that_fails_leaves_the_streamed_file_to_finish_on_resume(tmp_path):
    # Packing writes a second file beside the first: the limit is set after streaming, so only packing fails.
    script = f"""
import resource, numpy as np
from datagen.store.writers import open_writer
w = open_writer({str(tmp_path / 'out.h5')!r}, "hdf5", image_shape=(8, 8, 1), class_names=["a", "b"], provenance={{}})
images = np.repeat((np.arange(3000) % 251).astype(np.uint8), 64).reshape(3000, 8, 8, 1)
w.write(images, np.arange(3000) % 2, np.arange(3000), np.zeros(3000, bool))
resource.setrlimit(resource.RLIMIT_FSIZE, (20 << 10, resource.RLIM_INFINITY))
w.finish()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "WriteFailed: cannot write" in done.stderr and "Segmentation" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]  # no half-packed temporary file left
    from datagen.store.writers import open_writer
    with open_writer(tmp_path / "out.h5", "hdf5", image_shape=(8, 8, 1), class_names=["a", "b"], provenance={},
                     resume=True) as writer:
        assert writer.counts() == [1500, 1500]
        writer.finish()
    with h5py.File(tmp_path / "out.h5") as f:
        assert f.attrs["complete"] and np.array_equal(f["images"][:, 7, 7, 0], np.arange(3000) % 251)


def test_train_keeps_the_last_checkpoint_when_the_next_cannot_be_written(run, tmp_path):
    # A 1-epoch run; epoch 2's last.pt (about 140 KB) does not fit under 100 KiB, its grids and metrics do.
    args = ("train", "digits", "--recipe", "tiny8", "--epochs", "2", "--out", str(run), "--resume")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    done = _datagen(tmp_path, 100, *args)
    _one_line_naming(done, "last.pt")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name != "last.pt"]  # no temporary file left
    assert subprocess.run([str(DATAGEN), *args], cwd=tmp_path, capture_output=True, timeout=300).returncode == 0
    assert '"status": "completed"' in (run / "run.json").read_text()


def test_evaluate_names_the_report_it_cannot_write(run, tmp_path):
    done = _datagen(tmp_path, 1, "evaluate", "--run", str(run), "--labels-per-class", "1", "--repeats", "1",
                    "--arms", "real", "--no-quality", "--json", str(tmp_path / "e.json"))
    assert done.returncode == 1 and "cannot write" in done.stderr and "e.json" in done.stderr
    assert done.stderr.strip().count("\n") == 0 and not list(tmp_path.glob(".e.json*"))
