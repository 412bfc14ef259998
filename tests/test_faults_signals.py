"""Faults from outside (issue 17): SIGTERM stops train and augment as Ctrl-C does, and one writer at a time.

SIGTERM (what SLURM, Kubernetes and torchrun send before a kill) saves and exits 143, and --resume continues
exactly; a second process on a run directory or output refuses in one line naming the holder; a lock left by a
dead process is taken over.
"""

import errno
import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import augment_in_background
from test_train import STEPS_PER_EPOCH, Uninterrupted, _opts, _steps, _train_in_background, _wait_for

from datagen.common import interrupts, locks
from datagen.common.errors import DatagenError
from datagen.generate import augment as aug
from datagen.model import checkpoint
from datagen.store.inspect import inspect
from datagen.train import loop as training


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return Uninterrupted(tmp_path_factory.mktemp("uninterrupted"))


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what a lock left by kill -9 names."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def _holding(path) -> subprocess.Popen:
    """Another live process holding the lock of `path` until its stdin closes."""
    code = ("import sys; from datagen.common import locks\n"
            f"with locks.hold({str(path)!r}, 'it'):\n    print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --- SIGTERM ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupt"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_mid_train_saves_mid_epoch_and_resume_continues_exactly(tmp_path, uninterrupted, signum, code, said):
    """Ctrl-C and SIGTERM alike: finish the step, save, exit 128 + the signal; the resumed run's losses are the
    uninterrupted run's."""
    proc = _train_in_background(tmp_path)
    _wait_for(proc, tmp_path / "r" / "metrics.jsonl", lambda records: len(records) >= 50)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"{said}: saving a checkpoint after this step" in err and "checkpoint saved" in err and "Traceback" not in err
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "interrupted"
    assert not locks.lock_path(tmp_path / "r").exists()  # released on the way out
    state = checkpoint.load(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["batch"] > 0  # mid-epoch
    target = state["epoch"] + 2
    resumed = training.fit(training.prepare(_opts(tmp_path / "r", dataset=None, recipe=None, resume=True, epochs=target)))
    assert resumed.status == "completed"
    a, b = _steps(tmp_path / "r"), uninterrupted.steps(target)
    assert a == b and len(a) == target * STEPS_PER_EPOCH > state["step"]  # the next losses are the uninterrupted run's


@pytest.mark.slow
def test_sigterm_mid_augment_exits_143_a_second_writer_refuses_and_resume_gives_exact_counts(cli, run, tmp_path):
    out = tmp_path / "t.h5"
    proc, args = augment_in_background(run, out, tmp_path, started_bytes=100_000)

    second = cli(*args, "--overwrite")  # would delete the first one's output: refused before anything is touched
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by process {proc.pid}" in lines[0] and "t.h5.lock" in lines[0], second.stderr

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "--resume" in err.strip().splitlines()[-1]
    interrupted = inspect(out)  # every acknowledged batch is in the file, and the file does not claim to be done
    assert not interrupted.complete and 0 < sum(interrupted.counts) < 30000
    assert not locks.lock_path(out).exists()
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = inspect(out)
    assert summary.complete and not summary.problems and summary.counts == [3000] * 10
    with h5py.File(out) as f:
        assert np.bincount(f["labels"][:]).tolist() == [3000] * 10


def _signal_on_batch(monkeypatch, signum: int, batch: int) -> None:
    """Deliver `signum` to this process while augment computes its `batch`-th batch of candidates."""
    original, calls = aug.candidates, {"n": 0}

    def signalled(*args, **kw):
        calls["n"] += 1
        if calls["n"] == batch:
            os.kill(os.getpid(), signum)
        return original(*args, **kw)

    monkeypatch.setattr(aug, "candidates", signalled)


@pytest.mark.parametrize("fmt", ["hdf5", "imagefolder"])
def test_ctrl_c_in_augment_keeps_the_batch_under_way_exits_130_and_resumes(cli, run, tmp_path, monkeypatch, fmt):
    out = tmp_path / ("c.h5" if fmt == "hdf5" else "c")
    args = ["augment", str(run), "--per-class", "40", "--batch-size", "5", "--seeds-per-class", "3", "--no-filter",
            "--exclude-unlabeled", "--format", fmt, "--out", str(out)]
    _signal_on_batch(monkeypatch, signal.SIGINT, 4)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stopped = cli(*args)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupt: stopping after this batch" in stopped.stderr and "--resume" in stopped.stderr
    partial = inspect(out)
    assert not partial.complete and partial.counts == [20] + [0] * 9  # the 4th batch, under way, was written too
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # given back
    monkeypatch.undo()
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = inspect(out)
    assert summary.complete and not summary.problems and summary.counts == [40] * 10
    assert not locks.lock_path(out).exists() and not (out.is_dir() and any(p.suffix == ".lock" for p in out.iterdir()))


def test_a_repeated_sigterm_does_not_abort_the_save_but_a_ctrl_c_after_it_does():
    with interrupts.StopRequest("saving") as stop:
        stop.armed = True
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # scheduler and torchrun both send it: still a clean stop
        assert stop.signum == signal.SIGTERM
        with pytest.raises(interrupts.Interrupted) as aborted:
            os.kill(os.getpid(), signal.SIGINT)
    assert aborted.value.exit_code == 130


# --- locks --------------------------------------------------------------------------------------------------------


def test_a_stale_lock_of_a_dead_process_is_taken_over(run, tmp_path):
    out = tmp_path / "s.h5"
    lock = locks.lock_path(out)
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename}) + "\n")  # left by a kill -9
    result = aug.augment(aug.AugmentOptions(run=run, per_class=3, seeds_per_class=2, filter=False, out=out,
                                            batch_size=8, include_unlabeled=False, progress=False))
    assert result.counts == [3] * 10 and not lock.exists()


def test_without_kernel_locks_the_pid_decides(tmp_path, monkeypatch):
    """Where flock is missing or refused (Windows, NFS without locking): a live pid holds, a dead one is stale."""
    def no_flock(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_flock)
    lock = locks.lock_path(tmp_path / "o.h5")
    lock.write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(DatagenError, match=f"in use by process {os.getppid()}"):
        with locks.hold(tmp_path / "o.h5", "the output"):
            pass
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename}))
    with locks.hold(tmp_path / "o.h5", "the output"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_train_refuses_a_run_directory_another_process_holds(cli, run, tmp_path):
    holders = [_holding(run), _holding(tmp_path / "new")]  # a run to resume, and a new run's directory to be
    try:
        resumed = cli("train", "--resume", "--out", str(run), "--epochs", "2")
        fresh = cli("train", "digits", "--recipe", "tiny8", "--out", str(tmp_path / "new"))
    finally:
        for holder in holders:
            holder.communicate("")
    for refused, holder, folder in zip((resumed, fresh), holders, (run.resolve(), tmp_path / "new")):
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr
        assert f"the run directory {folder} is in use" in lines[0]
        assert f"in use by process {holder.pid}" in lines[0] and "wait for it to finish" in lines[0]
    assert json.loads((run / "run.json").read_text())["status"] == "completed"  # the held run was left alone
    assert not (tmp_path / "new").exists()  # refused before anything was written


def test_without_room_for_a_lock_file_the_writer_goes_on_and_says_so(tmp_path, monkeypatch, capsys):
    """A volume mounted at /output under a read-only /: the lock cannot go beside the output."""
    real_open = os.open

    def read_only_parent(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_parent)
    with locks.hold(tmp_path / "o.h5", "the output") as lock:
        assert lock is None
    assert "without a lock" in capsys.readouterr().err
