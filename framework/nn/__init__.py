"""Numerical core: cells, the stack, heads and models, clipping, optimizers, samplers, schedules."""
