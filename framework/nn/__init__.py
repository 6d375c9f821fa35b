"""Numerical core: cells, the recurrent stack, clipping, optimizers, samplers, schedules."""
