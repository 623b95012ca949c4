"""A host URLconf that mounts notify at ``alerts/`` (tests/test_mount.py)."""

from django.urls import include, path

urlpatterns = [
    path("alerts/", include("notify.urls")),
]
