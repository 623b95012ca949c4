"""A host URLconf without notify (tests/test_mount.py)."""

urlpatterns = []
