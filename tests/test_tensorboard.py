"""`datagen train --tensorboard`: event files mirror metrics.jsonl and the grids, resume shows no step twice,
and a missing tensorboard package is one line before anything is written."""

import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datagen.common.errors import DatagenError
from datagen.train import loop as training, rundir

TINY = ["train", "digits", "--recipe", "tiny8", "--set", "train.log_every=7", "--tensorboard"]
STEPS_PER_EPOCH = 1302 // 32  # digits' train split with tiny8's batch of 32


def _events(run):
    """Everything TensorBoard would show for the run (all of it, not a sample)."""
    board = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    board.Reload()
    return board


def _logged(run, name):
    """(step, value) of `name` in every metrics.jsonl record that has it."""
    return [(r["step"], r[name]) for r in rundir.read_metrics(run / "metrics.jsonl") if r.get(name) is not None]


def _shown(board, name):
    return [(e.step, e.value) for e in board.Scalars(name)]


def _mirrors(board, run, name):
    """TensorBoard shows `name` at exactly the steps metrics.jsonl logged it, with the same values (float32)."""
    shown, logged = _shown(board, name), _logged(run, name)
    return [s for s, _ in shown] == [s for s, _ in logged] and [v for _, v in shown] == pytest.approx([v for _, v in logged])


def test_event_files_mirror_metrics_and_grids_and_a_resume_shows_no_step_twice(cli, tmp_path):
    done = cli(*TINY, "--epochs", "1", "--out", "r")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "r"
    hints = [line for line in done.stderr.splitlines() if "tensorboard --logdir" in line]
    assert len(hints) == 1 and hints[0].endswith(f"tensorboard --logdir {run.relative_to(tmp_path) / 'tensorboard'}")
    board = _events(run)
    for name in ("d_loss", "eg_loss", "fidelity", "recon_error"):  # per step and per epoch, named as in metrics.jsonl
        assert _mirrors(board, run, name), name
    assert [s for s, _ in _shown(board, "d_loss")] == [*range(7, STEPS_PER_EPOCH, 7), STEPS_PER_EPOCH]
    grids = {tag: [(e.step, e.width, e.height) for e in board.Images(tag)] for tag in board.Tags()["images"]}
    assert grids == {f"samples/{kind}": [(STEPS_PER_EPOCH, 82, 82)] for kind in ("recon", "gauss", "prior")}  # tiny8 fits a prior

    # A run killed after its checkpoint has logged steps that resuming trains again: pretend it logged one.
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(run / "tensorboard")) as stale:
        stale.add_scalar("d_loss", 999.0, STEPS_PER_EPOCH + 3)
    resumed = training.fit(training.prepare(training.TrainOptions(out=run, resume=True, epochs=2, progress=False,
                                                                  tensorboard=True)))
    assert resumed.status == "completed"
    board = _events(run)
    assert _mirrors(board, run, "d_loss") and _mirrors(board, run, "fidelity")  # the stale step is gone, none twice
    assert [e.step for e in board.Images("samples/recon")] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


def test_a_run_stopped_by_nan_mid_epoch_closes_its_event_file(tmp_path, monkeypatch):
    """No epoch ended, so nothing flushed the events: stopping must close the writer (Ctrl-C takes the same path)."""
    from torch.utils.tensorboard import SummaryWriter

    closed, real_close = [], SummaryWriter.close
    monkeypatch.setattr(SummaryWriter, "close", lambda self: (closed.append(self.log_dir), real_close(self)))
    real_step, calls = training.train_step, [0]

    def nan_at_step_12(*args, **kw):
        calls[0] += 1
        logs = real_step(*args, **kw)
        return {**logs, "d_loss": float("nan")} if calls[0] == 12 else logs

    monkeypatch.setattr(training, "train_step", nan_at_step_12)
    opts = training.TrainOptions(dataset="digits", recipe="tiny8", overrides=["train.log_every=5"], epochs=1,
                                 out=tmp_path / "r", progress=False, tensorboard=True)
    assert training.fit(training.prepare(opts)).status == "failed"
    assert closed == [str(tmp_path / "r" / "tensorboard")]
    assert [s for s, _ in _shown(_events(tmp_path / "r"), "d_loss")] == [5, 10]


def test_without_the_tensorboard_package_the_flag_fails_before_anything_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` fails as if never installed
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)  # so torch's import runs again
    done = cli(*TINY, "--out", "r")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pip install 'datagen[tensorboard]'" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # no run directory, no runs/latest
    with pytest.raises(DatagenError, match="tensorboard"):
        training.TrainOptions(dataset="digits", tensorboard=True)


def test_without_the_flag_no_event_files(tiny_run):
    assert (tiny_run / "metrics.jsonl").exists() and not (tiny_run / "tensorboard").exists()
