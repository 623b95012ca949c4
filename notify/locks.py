"""Stream locks that make ids become visible in increasing order per user stream.

See the ``Entry`` docstring for why. PostgreSQL gets transaction-scoped advisory
locks; SQLite already lets only one transaction write at a time.
"""

from collections.abc import Iterable

from django.db import transaction

# Advisory lock namespace (the first key of the two-key form): "nt" in ASCII.
_NAMESPACE_ALL = 0x6E74
_NAMESPACE_USER = 0x6E75
_INT4 = 2**31 - 1


def lock_streams(user_ids: Iterable[int] | None, *, using: str = "default") -> None:
    """Lock user streams for the rest of the current transaction.

    Args:
        user_ids: pks of the users whose streams get a personal entry; ``None`` locks
            every stream (an announcement).
        using: database alias.
    Raises:
        django.db.transaction.TransactionManagementError: called outside ``atomic()``.

    Keys are taken in sorted order, so two senders cannot deadlock each other. Does
    nothing on databases other than PostgreSQL (SQLite serialises writers).
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("lock_streams() needs atomic()")
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if user_ids is None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [_NAMESPACE_ALL])
            return
        keys = sorted({int(pk) % _INT4 for pk in user_ids})
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, 0)", [_NAMESPACE_ALL])
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM "
            "(SELECT unnest(%s::int[]) AS k ORDER BY 1) AS keys",
            [_NAMESPACE_USER, keys],
        )
