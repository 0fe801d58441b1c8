"""Python callables the callables scenario runs as tasks, of every kind `deferred` accepts."""

from dataclasses import dataclass
from decimal import Decimal

try:  # Django 6.0 and newer
    from django.tasks import task
except ImportError:  # Django 5.2, with the django-tasks backport
    from django_tasks import task


def count_words(text: str) -> dict[str, int]:
    """Count the words of `text` (a module-level function)."""
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def average(numbers: list[float]) -> float:
    """Return the mean of `numbers`; an empty list raises ZeroDivisionError (a failing task)."""
    return sum(numbers) / len(numbers)


@dataclass
class Invoice:
    """An invoice whose `total` is deferred as a bound method: the instance travels with it."""

    customer: str
    vat_percent: int

    def total(self, amounts: list[str]) -> str:
        net = sum((Decimal(amount) for amount in amounts), Decimal(0))
        gross = net * (100 + self.vat_percent) / 100
        return f"{self.customer}: {gross.quantize(Decimal('0.01'))} ({self.vat_percent}% VAT)"


@dataclass
class Greeter:
    """A callable instance, as App Engine's `deferred` runs them."""

    greeting: str

    def __call__(self, name: str) -> str:
        return f"{self.greeting}, {name}!"


@task(queue_name="callables", priority=10)
def shout(text: str) -> str:
    """Upper-case `text` (a task of Django's Tasks framework, run by the same worker)."""
    return text.upper() + "!"
