"""The reference judge does not depend on the caller's random stream; loaded models are ready for inference."""

import torch

from datagen.classify.reference import fit_reference
from datagen.data.sources import load
from datagen.model import checkpoint
from datagen.train.rundir import checkpoint_of


def test_the_reference_fit_ignores_the_global_random_stream():
    """Its dropout masks used to come from the global stream, so the cached reference depended on call order."""
    train = load("digits", "train", size=8, channels=1)
    test = load("digits", "test", size=8, channels=1)
    torch.manual_seed(1)
    a = fit_reference(train, test, seed=0, steps=20)
    torch.manual_seed(2)
    torch.rand(100)
    b = fit_reference(train, test, seed=0, steps=20)
    assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    state = torch.get_rng_state()
    fit_reference(train, test, seed=0, steps=5)
    assert torch.equal(state, torch.get_rng_state())  # and leaves the caller's stream where it was


def test_load_model_gives_nets_in_eval_mode(tiny_run):
    model = checkpoint.load_model(checkpoint.load(checkpoint_of(tiny_run)))
    assert all(not m.training for _, net in model.nets.items() for m in net.modules())
