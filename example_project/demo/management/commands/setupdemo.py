"""Create the demo's users: admin/admin, and the leaderboard consumer with its API token."""

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

#: The consumer's e-mail is the `user_email` of the scores queue's acl (queue.yaml).
CONSUMER = ("leaderboard", "leaderboard@example.com")


class Command(BaseCommand):
    help = (
        "Create the superuser admin (password admin) and the user leaderboard, whom the scores "
        "queue's acl lets lease; print the leaderboard user's API token."
    )

    def add_arguments(self, parser):
        parser.add_argument("--migrate", action="store_true", help="migrate the database first")

    def handle(self, *args, **options):
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        users = get_user_model()
        if not users.objects.filter(username="admin").exists():
            users.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stderr.write("created superuser admin (password: admin)")
        consumer, _ = users.objects.get_or_create(
            username=CONSUMER[0], defaults={"email": CONSUMER[1]}
        )
        token, _ = Token.objects.get_or_create(user=consumer)
        self.stdout.write(token.key)
