"""URLs of the REST API; mount with ``path("taskqueue/api/", include("django_taskqueue.rest.urls"))``.

The paths are part of the public contract (docs/rest.md). Any other path under the mount
answers a JSON 404.
"""

from django.urls import path, re_path

from . import schema, views

app_name = "taskqueue_api"

urlpatterns = [
    path("queues/", views.QueueListView.as_view(), name="queue-list"),
    path("queues/<str:queue>/", views.QueueDetailView.as_view(), name="queue-detail"),
    path("queues/<str:queue>/tasks/", views.TaskListView.as_view(), name="task-list"),
    path(
        "queues/<str:queue>/tasks/<str:name>/",
        views.TaskDetailView.as_view(),
        name="task-detail",
    ),
    path("queues/<str:queue>/lease/", views.LeaseView.as_view(), name="lease"),
    path(
        "queues/<str:queue>/tasks/<str:name>/lease/",
        views.ModifyLeaseView.as_view(),
        name="task-lease",
    ),
    path("queues/<str:queue>/delete/", views.DeleteBatchView.as_view(), name="delete-batch"),
    path("schema/", schema.SchemaView.as_view(), name="schema"),
    path("schema/docs/", schema.SchemaDocsView.as_view(), name="schema-docs"),
    path("schema/docs/redoc.js", schema.redoc_script, name="schema-docs-script"),
    re_path(r"^.*$", views.NotFoundView.as_view(), name="not-found"),
]
