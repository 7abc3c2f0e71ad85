"""The dead-letter queue: a purpose-built keyspace beside RQ (entry JSON with TTL + sorted-set indexes)."""
