"""Small image classifiers: their nets, the one fit loop they all train with, prediction, and the cached reference judge."""
