"""The Redis dispatch layer: key layout, Lua scripts, blocking moves."""
