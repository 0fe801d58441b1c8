"""The peers measured side by side: the same no-op job (`bench.jobs.mark`) in each."""
