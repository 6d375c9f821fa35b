"""The commands: the Hydra training app, generation, run comparison and the pre-Hydra checks."""
