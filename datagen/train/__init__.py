"""Training: the loop with exact resume, the per-epoch monitor, and the run directory it writes."""
