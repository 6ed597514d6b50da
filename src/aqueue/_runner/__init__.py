"""The runner: consumers, heartbeat, promoter and resync, supervised in one event loop."""
