"""Training: the validated run config, the trainer, checkpoints and the process runtime."""
