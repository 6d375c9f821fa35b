"""The models: the recurrent stack under a task head (language model, classifier, forecaster)."""
