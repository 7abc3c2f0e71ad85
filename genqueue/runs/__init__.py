"""Runs: a batch of jobs submitted, watched and continued as one unit (store over Redis, rules pure)."""
