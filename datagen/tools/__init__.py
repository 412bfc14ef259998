"""The thesis' latent-space figures on any run: reconstruct, sample, chain, similarity, explore, embed, interpolate."""
