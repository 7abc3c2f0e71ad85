"""Usage and budgets: what jobs spent (tokens, images, dollars), recorded per tenant, task and limit key in time
buckets by the move that ends each attempt (lua/record.lua, composed into the worker's move scripts; `record`
builds its arguments), read by `store` (genqueue usage, the Usage page), and the budgets that cap it (`budgets`,
`budget_store`)."""
