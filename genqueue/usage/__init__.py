"""Usage and budgets: what tenants spent (tokens, images, dollars) in time buckets, and the budgets that cap it."""
