"""The benchmark harness of django-taskqueue: `bash bench/run.sh` runs it (see docs/benchmarks.md)."""
