"""What the scenarios store: uploaded files and their parse results, and the leaderboard."""

from django.db import models


class Upload(models.Model):
    """An uploaded CSV file, parsed in the background by a push task."""

    class Status(models.TextChoices):
        WAITING = "WAITING", "Waiting for the parser"
        PARSED = "PARSED", "Parsed"
        FAILED = "FAILED", "Failed"

    filename = models.CharField(max_length=255)
    # The file itself, in the database: the worker may run on another machine than the web server.
    data = models.BinaryField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    task_name = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    parsed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_status_display()})"

    @property
    def is_ready(self) -> bool:
        return self.status != self.Status.WAITING


class PlayerScore(models.Model):
    """A player's total in one game, as the leaderboard consumer reports it."""

    game = models.CharField(max_length=100)
    player = models.CharField(max_length=100)
    points = models.BigIntegerField(default=0)
    events = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["game", "-points", "player"]
        constraints = [
            models.UniqueConstraint(fields=["game", "player"], name="demo_one_score_per_player")
        ]

    def __str__(self) -> str:
        return f"{self.player} in {self.game}: {self.points}"
