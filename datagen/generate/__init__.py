"""Generation: latent neighbours of labeled seeds through G, the label filter, and the augment pipeline."""
