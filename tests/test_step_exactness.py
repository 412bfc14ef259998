"""Speed changes give the same training: to the last bit where meant to be exact, else within a stated tolerance.

The reference below is the step written plainly, as before the optimisation: the D update runs its
own E/G forward pass (without gradients) and the E/G update runs another. The optimised step shares
the first pass. Losses and weights must agree exactly over several steps; only BatchNorm's running
statistics (used in eval mode, never in a training loss) differ, because the shared pass updates
them once per step instead of twice.
"""

import contextlib
import math

import pytest
import torch

from datagen.classify.fit import predict, probabilities
from datagen.classify.nets import small_cnn
from datagen.model import checkpoint, nets, recipes, speed
from datagen.model.checkpoint import load_model
from datagen.model.latent import Model
from datagen.model.objectives import _OBJECTIVES, make_optimizers, train_step


def two_pass_step(model, opt, x, z_noise):
    forward, d_fn, eg_fn = _OBJECTIVES[model.recipe.model]
    logs = {}
    if d_fn is not None:
        with torch.no_grad():
            f = forward(model, x, z_noise[0])
        d_out = d_fn(model, x, f, z_noise[0])
        logs.update({f"d_{k}" if k != "loss" else "d_loss": v.item() for k, v in d_out.items()})
        opt.d.zero_grad(set_to_none=True)
        d_out["loss"].backward()
        opt.d.step()
    ds = [d for d in (model.nets.d1, model.nets.d2) if d is not None]
    for d in ds:
        d.requires_grad_(False)
    for z_n in z_noise:
        eg_out = eg_fn(model, x, forward(model, x, z_n), z_n)
        logs.update({f"eg_{k}" if k != "loss" else "eg_loss": v.item() for k, v in eg_out.items()})
        opt.eg.zero_grad(set_to_none=True)
        eg_out["loss"].backward()
        opt.eg.step()
    for d in ds:
        d.requires_grad_(True)
    return logs


def _trained(r, step, steps=4, prepare=lambda model: None):
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    prepare(model)
    opt = make_optimizers(model)
    gen = torch.Generator().manual_seed(1)
    history = []
    for _ in range(steps):
        x = torch.rand(16, r.image.channels, r.image.size, r.image.size, generator=gen) * 2 - 1
        history.append(step(model, opt, x, [model.gaussian(16, gen) for _ in range(r.train.eg_steps)]))
    return model, history


@pytest.mark.parametrize("variant", [[], ["model=bigan"], ["model=autoencoder"],
                                     ["train.recon_weight=1", "train.latent_cycle_weight=1", "train.eg_steps=2"],
                                     ["model=bigan", "train.recon_weight=1", "train.eg_steps=2"]])
@pytest.mark.parametrize("recipe", ["tiny8", "tiny16"])
def test_shared_forward_pass_trains_exactly_like_two_passes(recipe, variant):
    r = recipes.apply_overrides(recipes.load(recipe), variant)
    fast, fast_logs = _trained(r, train_step)
    plain, plain_logs = _trained(r, two_pass_step)
    assert fast_logs == plain_logs and all(math.isfinite(v) for logs in fast_logs for v in logs.values())
    for name, net in fast.nets.items():
        for (p_name, a), b in zip(net.named_parameters(), getattr(plain.nets, name).parameters()):
            assert torch.equal(a, b), f"{name}.{p_name} differs"


# ---- optimisations that are not exact: a stated tolerance ----

CHANNELS_LAST_TOLERANCE = 1e-5  # relative, on every logged loss of 3 steps, and absolute on every weight


@pytest.mark.parametrize("recipe", ["tiny8", "tiny16"])
def test_channels_last_trains_like_contiguous_within_tolerance(recipe):
    """NHWC convolutions sum in another order: same maths, float rounding differs (see datagen.speed)."""
    r = recipes.load(recipe)

    def run(channels_last):
        how = speed.Speed(channels_last=channels_last)
        prepare = lambda model: speed.prepare([n for _, n in model.nets.items()], how)
        step = lambda model, opt, x, z: train_step(model, opt, speed.as_input(x, how), z)
        return _trained(r, step, steps=3, prepare=prepare)

    (plain, plain_logs), (nhwc, nhwc_logs) = run(False), run(True)
    assert any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in nhwc.nets.encoder.parameters()), "channels_last was not applied"
    for a, b in zip(plain_logs, nhwc_logs):
        assert a.keys() == b.keys()
        for k in a:
            assert abs(a[k] - b[k]) <= CHANNELS_LAST_TOLERANCE * max(1.0, abs(a[k])), k
    for name, net in plain.nets.items():
        for p, q in zip(net.parameters(), getattr(nhwc.nets, name).parameters()):
            assert (p - q).abs().max().item() <= CHANNELS_LAST_TOLERANCE


def test_compile_that_fails_leaves_the_net_eager(monkeypatch, capsys):
    nets_ = [torch.nn.Sequential(torch.nn.Linear(3, 2)) for _ in range(2)]
    x = torch.randn(4, 3)
    expected = [net(x) for net in nets_]
    tried = []

    def broken(*args, **kwargs):
        tried.append(args)
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(speed, "_warned", False)
    capsys.readouterr()
    speed.prepare(nets_, speed.Speed(compile=True))
    assert len(tried) == 2  # compilation was attempted for each net, and failed
    for net, before in zip(nets_, expected):
        assert net._compiled_call_impl is None  # the fallback: the net still runs its plain forward
        assert torch.equal(net(x), before)
    warning = capsys.readouterr().err
    assert warning.count("running eagerly") == 1 and "no compiler here" in warning  # one line, not one per net


def test_compile_that_works_compiles_in_place(monkeypatch):
    """The other branch, without a compiler: a net whose compile succeeds runs the compiled call."""
    net = torch.nn.Linear(3, 2)
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)
    speed.compile_in_place(net)
    assert net._compiled_call_impl is not None
    assert list(dict(net.named_parameters())) == ["weight", "bias"]  # parameter names unchanged: checkpoints load


def test_defaults_per_device():
    cpu = speed.choose(torch.device("cpu"))
    assert cpu.channels_last and not cpu.compile and not cpu.amp  # amp is CUDA-only
    assert not speed.choose(torch.device("cpu"), amp=True).amp
    assert not speed.choose(torch.device("cpu"), channels_last=False).channels_last
    assert speed.precision(torch.device("cpu"), cpu) is contextlib.nullcontext


def test_autocast_path_trains(monkeypatch):
    """The bf16 path used on CUDA, exercised on the CPU (which supports bf16 autocast too)."""
    r = recipes.load("tiny8")
    how = speed.Speed(amp=True)
    step = lambda model, opt, x, z: train_step(model, opt, x, z, speed.precision(torch.device("cpu"), how))
    model, logs = _trained(r, step, steps=2)
    assert all(math.isfinite(v) for entry in logs for v in entry.values())
    assert all(p.dtype == torch.float32 for _, n in model.nets.items() for p in n.parameters())


def test_checkpoints_do_not_depend_on_the_layout(tmp_path):
    """A run trained channels_last loads into contiguous nets (and back) with the same weights."""
    r = recipes.load("tiny8")
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    speed.prepare([n for _, n in model.nets.items()], speed.Speed(channels_last=True))
    checkpoint.save(tmp_path / "c.pt", {"recipe": r.to_dict(), "nets": {k: n.state_dict() for k, n in model.nets.items()}})
    state = checkpoint.load(tmp_path / "c.pt")
    plain = load_model(state, how=speed.Speed(channels_last=False))
    nhwc = load_model(state, how=speed.Speed(channels_last=True))
    for name, net in model.nets.items():
        for p, q, s in zip(net.parameters(), getattr(plain.nets, name).parameters(), getattr(nhwc.nets, name).parameters()):
            assert torch.equal(p, q) and torch.equal(p, s)
    assert next(plain.nets.encoder.parameters()).is_contiguous()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert not any(net.training for model in (plain, nhwc) for _, net in model.nets.items())  # load_model: eval mode
    assert torch.allclose(plain.encode(x), nhwc.encode(x), atol=1e-5)


def test_inference_in_chunks_matches_one_batch():
    """encode_all/decode_all and the classifiers run in cache-sized chunks on CPU: the same outputs as one batch
    (eval mode: no batch statistics; stated tolerance 1e-6 for kernels that block differently by batch size)."""
    assert speed.inference_batch(torch.device("cpu")) == 64 and speed.inference_batch(torch.device("cuda")) == 512
    r = recipes.load("tiny16")
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    speed.prepare([model.nets.encoder, model.nets.generator], speed.Speed(channels_last=True))
    model.nets.encoder.eval(), model.nets.generator.eval()
    z = model.project(model.gaussian(200, torch.Generator().manual_seed(1)))  # 3 full chunks and a partial one
    with torch.inference_mode():
        x, codes = model.decode(z), model.encode(model.decode(z))
    assert torch.allclose(model.decode_all(z), x, atol=1e-6)
    assert torch.allclose(model.encode_all(x), codes, atol=1e-6)
    net = small_cnn(3, 4).eval()
    with torch.inference_mode():
        whole = torch.softmax(net(x), 1)
    assert torch.allclose(probabilities(net, x), whole, atol=1e-6)
    assert torch.equal(predict(net, x), whole.argmax(1))
