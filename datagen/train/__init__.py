"""Training: the loop with exact resume, the per-epoch monitor, the run directory it writes, its TensorBoard mirror."""
