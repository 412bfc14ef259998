"""The model: recipes, the nets built from them, latent geometry, the objectives, execution settings, checkpoints."""
