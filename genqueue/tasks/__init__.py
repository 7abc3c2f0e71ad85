"""What a worker runs: the built-in `generate` task and the providers it calls."""
