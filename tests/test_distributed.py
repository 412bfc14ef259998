"""Training under torchrun: 2 CPU processes (gloo) against one, exact resume in 2, kill -9 of a rank, bad input.

Each launch is a real `python -m torch.distributed.run --standalone --nproc_per_node 2 -m datagen train ...` on
the bundled digits with tiny8 and a global batch of 64 (32 per process), every step logged.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.common.seeds import generator
from datagen.model import checkpoint, nets, recipes
from datagen.model.checkpoint import load_model
from datagen.model.latent import Model
from datagen.train import distributed, loop as training, rundir

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "datagen"]
TINY = ["train", "digits", "--recipe", "tiny8", "--batch-size", "64", "--set", "train.log_every=1"]
STEPS_PER_EPOCH = 1302 // 64  # digits' train split over the global batch, whatever the number of processes
EPOCHS = 3  # of the straight run: the kill lands in epoch 2 or, on a slow machine, 3
KILL_TIMEOUT = 60  # seconds from kill -9 of one rank to torchrun's non-zero exit (measured: about 1 s)

# 2x32 against 1x64, per step over the first epoch. Not exact: BatchNorm normalises by each process's 32 images,
# not all 64, and the KL term is computed on the mean and variance of each process's 32 codes (a noisier, biased
# estimate). The adversarial terms are means over samples, which averaging the gradients keeps exact, and
# measured within 0.3% (d_*, eg_adv); eg_loss, which holds the KL term, within 2%, eg_kl within 0.05.
# Without BatchNorm and with kl_weight 0 the two agree to float rounding (2e-7 measured; see the test below).
RELATIVE = {"d_loss": 0.01, "d_d1": 0.01, "d_d2": 0.01, "eg_adv": 0.01, "eg_loss": 0.05}
KL_ABSOLUTE = 0.1
ROUNDING = 1e-5


def _torchrun(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _steps(run: Path) -> list[dict]:
    """Per-step records without the timing field, which differs run to run."""
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in rundir.read_metrics(run / "metrics.jsonl")
            if "event" not in r]


def _one_process(out: Path, **kw) -> Path:
    opts = dict(dataset="digits", recipe="tiny8", batch_size=64, overrides=["train.log_every=1"], epochs=1, out=out,
                progress=False)
    opts.update(kw)
    assert training.fit(training.prepare(training.TrainOptions(**opts))).status == "completed"
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """A 3-epoch run trained by 2 processes, straight through (read only: copy it to write)."""
    folder = tmp_path_factory.mktemp("two")
    done = _torchrun(*TINY, "--epochs", str(EPOCHS), "--out", "straight", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "straight"


@pytest.mark.slow
def test_two_processes_train_a_run_that_one_process_uses_and_resumes(two_processes, cli, tmp_path):
    info = json.loads((two_processes / "run.json").read_text())
    assert info["status"] == "completed" and info["processes"] == 2
    assert [r["step"] for r in _steps(two_processes)] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))  # rank 0 alone logs
    state = checkpoint.load(two_processes / "checkpoints" / "last.pt")
    assert state["epoch"] == EPOCHS and state["distributed"] == {"sync_bn": False, "processes": 2}
    assert load_model(state).decode(torch.zeros(2, 8)).shape == (2, 1, 8, 8)
    run = shutil.copytree(two_processes, tmp_path / "run")
    grown = cli("augment", str(run), "--per-class", "50", "--no-filter", "--out", "grown.h5")
    assert grown.returncode == 0, grown.stderr
    # the checkpoint means the same for any number of processes: one process continues it
    more = training.fit(training.prepare(training.TrainOptions(out=run, resume=True, epochs=EPOCHS + 1, progress=False)))
    assert more.status == "completed" and more.epoch == EPOCHS + 1
    assert [r["step"] for r in _steps(run)] == list(range(1, (EPOCHS + 1) * STEPS_PER_EPOCH + 1))


@pytest.mark.slow
def test_2x32_follows_the_loss_curve_of_1x64(two_processes, tmp_path):
    one = _steps(_one_process(tmp_path / "one"))
    two = [r for r in _steps(two_processes) if r["epoch"] == 1]
    assert len(one) == len(two) == STEPS_PER_EPOCH
    assert one != two  # per-process batch statistics: not the same numbers
    for a, b in zip(one, two):
        for name, tolerance in RELATIVE.items():
            assert abs(a[name] - b[name]) <= tolerance * abs(a[name]), (a["step"], name, a[name], b[name])
        assert abs(a["eg_kl"] - b["eg_kl"]) <= KL_ABSOLUTE, (a["step"], a["eg_kl"], b["eg_kl"])


@pytest.mark.slow
def test_without_batch_statistics_2x32_is_1x64_to_rounding(tmp_path):
    """No BatchNorm and kl_weight 0: every loss is a mean over samples, so the averaged gradients of two halves
    are the gradient over the whole batch; only the order of float sums differs."""
    tiny8 = (resources.files("datagen.builtin_recipes") / "tiny8.toml").read_text()
    (tmp_path / "plain.toml").write_text(tiny8.replace("bn = true, ", "").replace("name = \"tiny8\"", "name = \"plain\""))
    args = ["train", "digits", "--recipe", "plain.toml", "--batch-size", "64", "--set", "train.log_every=1",
            "--set", "train.kl_weight=0", "--epochs", "1"]
    done = _torchrun(*args, "--out", "two", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one = _steps(_one_process(tmp_path / "one", recipe=str(tmp_path / "plain.toml"),
                              overrides=["train.log_every=1", "train.kl_weight=0"]))
    two = _steps(tmp_path / "two")
    assert len(one) == len(two) == STEPS_PER_EPOCH
    for a, b in zip(one, two):
        for name in ("d_loss", "d_d1", "d_d2", "eg_loss", "eg_adv"):  # eg_kl: logged, on each process's codes
            assert abs(a[name] - b[name]) <= ROUNDING * abs(a[name]), (a["step"], name, a[name], b[name])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int:
    env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return int(next(v for v in env if v.startswith(b"RANK=")).split(b"=")[1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc")
def test_kill_9_of_a_rank_ends_the_run_and_two_processes_resume_it_exactly(two_processes, tmp_path):
    proc = subprocess.Popen([*TORCHRUN, *TINY, "--epochs", "400", "--out", "r"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    # epoch 1's checkpoint is saved before epoch 2's first step is logged: kill once a few are
    while not (metrics.exists() and sum(r["epoch"] >= 2 and "event" not in r for r in rundir.read_metrics(metrics)) >= 3):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"training never got to epoch 2: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) == 2
    victim = next(pid for pid in workers if _rank_of(pid) == 1)  # rank 0, the one writing the run, survives it
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    try:
        proc.communicate(timeout=KILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the run still runs {KILL_TIMEOUT} s after kill -9 of rank 1")
    print(f"torchrun exited {proc.returncode} {time.monotonic() - killed:.1f} s after kill -9 of rank 1")
    assert proc.returncode != 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and "(Z)" not in Path(f"/proc/{pid}/stat").read_text()]
    state = checkpoint.load(tmp_path / "r" / "checkpoints" / "last.pt")
    assert 1 <= state["epoch"] < EPOCHS and state["batch"] == 0
    resumed = _torchrun("train", "--resume", "--out", "r", "--epochs", str(EPOCHS), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "completed"
    assert _steps(tmp_path / "r") == _steps(two_processes)  # every step, after the kill too, as if never stopped


# ---- in one process: the slicing, the settings and what they refuse ----

def _group(world: int, rank: int) -> distributed.Group:
    return distributed.Group(distributed.Ranks(world=world, rank=rank, launched=True), torch.device("cpu"))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_the_ranks_slices_make_up_the_one_process_batch_and_noise(world):
    model = Model(recipe=recipes.load("tiny8"), nets=nets.build(recipes.load("tiny8")))
    order = torch.randperm(200, generator=torch.Generator().manual_seed(3))
    alone = generator("noise", 1)
    rows_alone, noise_alone = training._rank_batch(_group(1, 0), order, 2, 64, 2, model, alone)
    assert torch.equal(rows_alone, order[128:192])
    gens = [generator("noise", 1) for _ in range(world)]
    slices = [training._rank_batch(_group(world, r), order, 2, 64, 2, model, gens[r]) for r in range(world)]
    assert all(len(rows) == 64 // world for rows, _ in slices)
    assert torch.equal(torch.cat([rows for rows, _ in slices]), rows_alone)
    for i in range(2):  # each E/G update's noise
        assert torch.equal(torch.cat([noise[i] for _, noise in slices]), noise_alone[i])
    # every rank drew the whole batch: the run's noise stream is where it would be in one process
    assert all(torch.equal(g.get_state(), alone.get_state()) for g in gens)


def test_outside_torchrun_a_world_of_one(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.ranks() == distributed.Ranks() and not distributed.Ranks().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.ranks() == distributed.Ranks(world=4, rank=3, local=1, launched=True)


def _as_rank(monkeypatch, world: int, rank: int = 0) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


@pytest.mark.parametrize("case", ["batch", "sync-bn alone", "sync-bn on cpu"])
def test_bad_distributed_settings_are_one_line_and_leave_no_run(cli, tmp_path, monkeypatch, case):
    world, args, expected = {
        "batch": (3, ["--batch-size", "32"], "multiple of 3"),
        "sync-bn alone": (1, ["--sync-bn"], "torchrun --nproc_per_node"),
        "sync-bn on cpu": (2, ["--sync-bn", "--device", "cpu"], "CUDA devices only"),
    }[case]
    if world > 1:
        _as_rank(monkeypatch, world)  # prepare reads the environment and refuses before any process group
    else:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    done = cli("train", "digits", "--recipe", "tiny8", "--epochs", "1", "--out", "run", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], done.stderr
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_keeps_its_batchnorm_mode(run, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(DatagenError, match="sync_bn = False"):
        training.prepare(training.TrainOptions(out=run, resume=True, epochs=2, sync_bn=True))
    assert training.prepare(training.TrainOptions(out=run, resume=True, epochs=2)).sync_bn is False


def test_sync_batchnorm_nets_save_what_plain_nets_load():
    r = recipes.load("tiny8")
    model = Model(recipe=r, nets=nets.build(r))
    before = {name: set(net.state_dict()) for name, net in model.nets.items()}
    distributed.sync_batchnorm(model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.nets.encoder.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not isinstance(m, torch.nn.SyncBatchNorm)
                   for m in model.nets.d1.modules())
    plain = nets.build(r)
    for name, net in model.nets.items():
        assert set(net.state_dict()) == before[name]
        getattr(plain, name).load_state_dict(net.state_dict())
