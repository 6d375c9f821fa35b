"""rnnlab: a plugin-based experiment framework for recurrent language models in NumPy."""

__version__ = "0.1.0"
