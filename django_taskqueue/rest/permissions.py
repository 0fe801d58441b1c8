"""Who may do what to a queue: the queue's `acl` from queue.yaml, then Django permissions.

A view says which right it needs in its `queue_right` attribute:

========  ===========================================  ========================================
right     acl entry that grants it                      Django permission that also grants it
========  ===========================================  ========================================
view      ``user_email`` (list queues and tasks, get)  ``django_taskqueue.view_taskrecord``
lease     ``user_email`` (lease, modify a lease)        ``django_taskqueue.change_taskrecord``
delete    ``user_email`` (delete one or a batch)        ``django_taskqueue.delete_taskrecord``
insert    ``writer_email``                              ``django_taskqueue.add_taskrecord``
========  ===========================================  ========================================

E-mail addresses match case-insensitively; a user without one matches no acl. A superuser holds
every permission. Anonymous callers are refused before anything else (401).
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions

from ..queues import QueueConfig

#: The Django permission that grants each right on every queue, acl or not.
PERMISSIONS = {
    "view": "django_taskqueue.view_taskrecord",
    "lease": "django_taskqueue.change_taskrecord",
    "delete": "django_taskqueue.delete_taskrecord",
    "insert": "django_taskqueue.add_taskrecord",
}


def _email(user: Any) -> str:
    return (getattr(user, "email", "") or "").strip().lower()


def _in(email: str, emails: tuple[str, ...]) -> bool:
    return bool(email) and email in {e.strip().lower() for e in emails}


def has_right(user: Any, config: QueueConfig, right: str) -> bool:
    """Whether `user` holds `right` ("view", "lease", "delete", "insert") on the queue."""
    if not (user and user.is_authenticated):
        return False
    if user.has_perm(PERMISSIONS[right]):
        return True
    email = _email(user)
    if right == "insert":
        return _in(email, config.writer_emails)
    return _in(email, config.user_emails)


def may_see(user: Any, config: QueueConfig) -> bool:
    """Whether the queue is shown to `user` in the list of queues: any right on it will do."""
    return any(has_right(user, config, right) for right in PERMISSIONS)


class QueueAccess(permissions.IsAuthenticated):
    """Allow the request if the user holds the view's `queue_right` on the URL's queue.

    The queue is resolved first (`view.get_queue_config()`), so an unknown queue is a 404
    and a push queue an `invalid_queue_mode`, for every authenticated caller.
    """

    message = "You may not do this on this queue: ask for its acl or a Django permission."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        right = getattr(view, "queue_right", None)
        if right is None:
            return True
        config = view.get_queue_config()
        if right == "see":
            return may_see(request.user, config)
        return has_right(request.user, config, right)
