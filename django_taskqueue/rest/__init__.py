"""The REST API of pull queues, for workers outside Django: the only part that imports DRF.

Mount it with ``path("taskqueue/api/", include("django_taskqueue.rest.urls"))``; see
docs/rest.md.
"""
