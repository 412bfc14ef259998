"""The FixMatch arm (datagen.eval.fixmatch) on the bundled 8x8 digits: repeatable, its unlabeled term acts, it helps."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from datagen.data.pixels import to_model_input
from datagen.data.sources import load
from datagen.eval import downstream, fixmatch

TINY = downstream.Recipe(steps=60, width=8)


@pytest.fixture(scope="module")
def digits():
    """5 labels per class (the first of each class), the rest of train unlabeled, and the test split."""
    train, test = load("digits", "train", size=8, channels=1), load("digits", "test", size=8, channels=1)
    picked = torch.cat([torch.nonzero(train.labels == c)[:5, 0] for c in range(10)])
    rest = torch.ones(len(train.labels), dtype=torch.bool)
    rest[picked] = False
    labeled = downstream.TrainingSet(train.images[picked], train.labels[picked])
    return labeled, train.images[rest], test


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_repeatable_and_leaves_the_callers_stream_and_threads(digits):
    labeled, unlabeled, test = digits
    torch.manual_seed(1)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    a = fixmatch.train(labeled, unlabeled, 10, seed=3, recipe=TINY)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    torch.manual_seed(2)  # another global state: the fit must not read it
    b = fixmatch.train(labeled, unlabeled, 10, seed=3, recipe=TINY)
    x = to_model_input(test.images).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and _same(a, b)
    assert not _same(a, fixmatch.train(labeled, unlabeled, 10, seed=4, recipe=TINY))


def test_the_unlabeled_term_changes_the_fit_and_vanishes_when_no_pseudo_label_passes(digits):
    labeled, unlabeled, _ = digits
    recipe = downstream.Recipe(steps=20, width=8)
    everything = fixmatch.train(labeled, unlabeled, 10, seed=0, recipe=recipe, threshold=0.0)
    nothing = fixmatch.train(labeled, unlabeled, 10, seed=0, recipe=recipe, threshold=1.01)
    ignored = fixmatch.train(labeled, unlabeled, 10, seed=0, recipe=recipe, unlabeled_weight=0.0)
    assert not _same(everything, nothing)
    assert _same(nothing, ignored)  # same draws, same batch (BatchNorm), zero unlabeled gradient


def test_unlabeled_loss_is_the_masked_mean_over_the_whole_batch_without_gradient_to_the_weak_view():
    weak = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 9.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], requires_grad=True)
    strong = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    loss = fixmatch.unlabeled_loss(weak, strong, threshold=0.95)
    # rows 0 and 1 are confident (p ~ 0.9998), with pseudo-labels 0 and 2; rows 2 and 3 are masked out
    confident = F.cross_entropy(strong[:2], torch.tensor([0, 2]), reduction="sum")
    assert loss.item() == pytest.approx(confident.item() / 4)
    loss.backward()
    assert weak.grad is None and strong.grad[2:].abs().sum() == 0 and strong.grad[:2].abs().sum() > 0
    assert fixmatch.unlabeled_loss(weak, strong, threshold=1.01).item() == 0.0


@pytest.mark.parametrize("channels", [1, 3])
def test_strong_view_is_repeatable_in_range_and_keeps_the_global_stream(channels):
    images = torch.randint(0, 256, (16, 8, 8, channels), dtype=torch.uint8)
    state = torch.get_rng_state()
    a = fixmatch.strong(images, torch.Generator().manual_seed(0))
    b = fixmatch.strong(images, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (16, channels, 8, 8) and a.dtype == torch.float32 and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, fixmatch.strong(images, torch.Generator().manual_seed(1)))


def test_cutout_blanks_one_square_per_image_to_background():
    x = torch.ones(32, 1, 8, 8)
    out = fixmatch.cutout(x, torch.Generator().manual_seed(0))
    holes = (out == -1).squeeze(1)
    assert ((out == 1) | (out == -1)).all()
    assert holes.flatten(1).sum(1).max() <= 16 and holes.flatten(1).sum(1).min() >= 4  # 4x4 square, clipped
    rows, cols = holes.any(2), holes.any(1)
    assert torch.equal(holes, rows[:, :, None] & cols[:, None, :])  # a rectangle, not scattered pixels


def test_settings_describe_the_defaults():
    defaults = inspect.signature(fixmatch.train).parameters
    for name in ("threshold", "unlabeled_ratio", "unlabeled_weight"):
        assert fixmatch.SETTINGS[name] == defaults[name].default


def test_a_few_labels_plus_unlabeled_images_reach_the_supervised_recipe(digits):
    """At 300 steps FixMatch beats both supervised arms on average over seeds (measured 0.904 vs 0.879 real+classic
    and 0.839 real over 8 seeds); here two seeds, held to the better supervised arm minus a small margin."""
    labeled, unlabeled, test = digits
    recipe = downstream.Recipe(steps=300, width=8)

    def mean(fit):
        return sum(downstream.accuracy(fit(seed), test.images, test.labels) for seed in (0, 1)) / 2

    real = mean(lambda s: downstream.train(labeled, 10, classic_aug=False, seed=s, recipe=recipe))
    classic = mean(lambda s: downstream.train(labeled, 10, classic_aug=True, seed=s, recipe=recipe))
    fixm = mean(lambda s: fixmatch.train(labeled, unlabeled, 10, seed=s, recipe=recipe))
    assert fixm >= max(real, classic) - 0.02, (fixm, real, classic)
