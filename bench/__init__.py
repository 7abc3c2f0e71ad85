"""Benchmarks and soak runs. `python -m bench` runs the comparison against bare RQ."""
