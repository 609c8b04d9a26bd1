"""Benchmarks: each prints its numbers and a ratio against a naive baseline measured in the same run."""
