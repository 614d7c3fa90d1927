"""redis-server fixtures (filled in by the limits work)."""
