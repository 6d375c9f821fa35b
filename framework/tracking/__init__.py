"""Tracking: MLflow runs, their records and plots, and the served pyfunc model."""
