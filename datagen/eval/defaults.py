"""The benchmark's fixed settings that the command line shows as defaults (no torch here: `--help` stays fast).

Every value chosen by a downstream number was chosen on the dev split (README, "datagen evaluate").
"""

# real+pseudo+gan: augment's whole default output, the unlabeled images with their spread labels and G's
# neighbours of them and of the seeds (--include-unlabeled); real+gan: the neighbours alone
ARMS = ("real", "real+classic", "real+pseudo", "real+pseudo+classic", "real+gan", "real+gan+classic",
        "real+pseudo+gan", "real+pseudo+gan+classic")
SSL_ARMS = ("fixmatch",)  # semi-supervised reference: not in the default arms (README gives its cost)
ALL_ARMS = ARMS + SSL_ARMS
BUDGETS = (1, 5, 10, 50)  # labels per class
REPEATS = 10
SPLITS = ("dev", "test")
GAN_PER_CLASS = 500  # generated images per class in the gan arms
# The downstream classifier (datagen.eval.downstream.Recipe), chosen on dev with the real and real+classic arms.
CLASSIFIER = {"width": 16, "dropout": 0.3, "steps": 1000, "batch": 64, "lr": 1e-2, "weight_decay": 5e-4}
