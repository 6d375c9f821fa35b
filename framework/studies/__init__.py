"""Benchmarks and studies: training throughput, the course recipe, vanishing gradients."""
