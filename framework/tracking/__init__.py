"""Tracking: the tracker protocol, MLflow runs and their records, tables, plots and served model."""
