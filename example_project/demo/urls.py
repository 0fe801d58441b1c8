"""URLs of the scenarios."""

from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("uploads/", views.uploads, name="uploads"),
    path("uploads/sample.csv", views.sample_csv, name="sample-csv"),
    path("uploads/<int:pk>/", views.upload, name="upload"),
    path("uploads/<int:pk>/isReady", views.is_ready, name="is-ready"),
    path("leaderboard/", views.leaderboard, name="leaderboard"),
    path("leaderboard/data.json", views.leaderboard_json, name="leaderboard-json"),
    path("leaderboard/totals/", views.ScoreTotals.as_view(), name="leaderboard-totals"),
    path("callables/", views.callables, name="callables"),
    path("callables/<str:result_id>.json", views.callable_json, name="callable-json"),
    # The push-task handler: only the task queue calls it.
    path("tasks/parse-upload/", views.parse_task, name="parse-task"),
]
