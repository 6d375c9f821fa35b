"""Sweeps: nested MLflow runs of a Hydra multirun, the Optuna sweeper and its report, the
Ray launcher."""
