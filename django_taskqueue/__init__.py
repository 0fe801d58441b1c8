"""django-taskqueue: App Engine's Task Queue, push and pull, on the Django database."""

__version__ = "0.1.0"
