"""Tracking: MLflow runs, sweeps as nested runs, plots and the served pyfunc model."""
