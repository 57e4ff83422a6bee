"""Benchmarks: the accelerated vs traditional harness and micro-benchmarks."""
