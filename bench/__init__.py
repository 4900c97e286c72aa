"""Benchmarks of mtping against Knative's adapter on a real control plane (not tests).

`python -m bench.scale` is the scale benchmark (see bench/README.md). Nothing here is imported
by mtping or by the tests.
"""
