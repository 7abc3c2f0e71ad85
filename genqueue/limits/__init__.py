"""Provider limits per limit key: concurrency slots with leases, an exact request rate, pauses (the
breaker), parking and waking — pure rules (rules.py) beside their Lua (lua/limits.lua) and store."""
