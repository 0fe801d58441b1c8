"""Scheduled jobs: App Engine's cron.yaml, served by every worker, each slot run exactly once."""
