"""The benchmark's fixed settings that the command line shows as defaults (no torch here: `--help` stays fast)."""

ARMS = ("real", "real+classic", "real+gan", "real+gan+classic")
GAN_PER_CLASS = 500  # generated images per class in the gan arms
CLASSIFIER_STEPS = 600  # optimisation steps of every downstream classifier
