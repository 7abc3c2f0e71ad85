"""Small helpers every package may use, with no Redis and no genqueue state: logging, secret masking, durations."""
