"""The registered dataset names, without torch: shell completion lists them on every tab."""

BUNDLED = ("mnist-5k", "digits")  # offline, ship inside PyPI packages
TORCHVISION = ("mnist", "fashion-mnist", "svhn", "cifar10", "celeba")  # downloaded by torchvision


def dataset_names() -> list[str]:
    return [*BUNDLED, *TORCHVISION]
