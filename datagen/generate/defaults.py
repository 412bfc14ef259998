"""augment's defaults, chosen downstream on the dev split (README, "Choosing augment's defaults"); torch-free, so
the CLI can show them without importing the models."""

NOISE = (0.5,)  # the latent noise scale(s) of a neighbour
MIX = 0.0  # share of candidates blended from two seeds of a class
FILTER = True  # the seed-trained label filter (min confidence 0.9): +1.1 points on dev once G generated
MIN_LABEL_CONFIDENCE = 0.0  # unlabeled images with a less sure spread label are left out
