"""Benchmarks: each prints a JSON object as its last line."""
