"""The test project as a worker-only deployment sees it: no admin, no REST API, no DRF.

Used by tests/dispatch/test_worker_imports.py to show what a worker process imports.
"""

from .settings import *  # noqa: F403

INSTALLED_APPS = [  # noqa: F405
    app
    for app in INSTALLED_APPS  # noqa: F405
    if app not in ("django.contrib.admin", "rest_framework", "rest_framework.authtoken")
]
ROOT_URLCONF = "tests.lean_urls"
