"""Evaluation: the downstream benchmark protocol, its classifier recipe, quality numbers for E and G, and the report."""
