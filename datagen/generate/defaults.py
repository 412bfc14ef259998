"""augment's defaults, chosen downstream on the dev split (README, "Choosing augment's defaults"); torch-free, so
the CLI can show them without importing the models."""

NOISE = (0.5,)  # the latent noise scale(s) of a neighbour
MIX = 0.0  # share of candidates blended from two seeds of a class
FILTER = None  # the seed-trained label filter (min confidence 0.9); None: on when every class has FILTER_MIN_SEEDS
FILTER_MIN_SEEDS = 10  # where it was measured: +1.1 points on dev at 10 per class; at 1 per class it rejects nearly all
MIN_LABEL_CONFIDENCE = 0.0  # unlabeled images with a less sure spread label are left out
# write the unlabeled images themselves with their spread labels; None: whenever augment grows from them
INCLUDE_UNLABELED = None
