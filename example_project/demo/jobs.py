"""Python callables the demo runs as tasks: one through `deferred`, one through Django Tasks."""

try:  # Django 6.0 and newer
    from django.tasks import task
except ImportError:  # Django 5.2, with the django-tasks backport
    from django_tasks import task


def count_words(text: str) -> dict[str, int]:
    """Count the words of `text` (run by the worker through `deferred.defer`)."""
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


@task(queue_name="default", priority=10)
def shout(text: str) -> str:
    """Upper-case `text` (a task of Django's Tasks framework, run by the same worker)."""
    return text.upper() + "!"
