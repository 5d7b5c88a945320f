"""Training: the fused trainer, checkpoints and the run directory."""
