"""Push dispatch: the worker, delivery, rate limiting and sweeps."""
