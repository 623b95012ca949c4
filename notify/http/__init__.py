"""notify's HTTP APIs: the inbox and send APIs (``api``) and their error body (``errors``)."""
