"""Exceptions raised by notify."""


class NotifyError(Exception):
    """Base class of notify's errors."""


class InvalidParameter(NotifyError, ValueError):
    """A field or parameter has a bad value; ``field`` names it."""

    code = "invalid_parameter"

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownRecipient(InvalidParameter):
    """A recipient names no user; nothing was stored for anyone."""

    code = "unknown_recipient"

    def __init__(self, recipient):
        self.recipient = recipient
        super().__init__("recipients", f"unknown recipient {recipient!r}")


class RateLimited(NotifyError):
    """A caller is over its rate; ``retry_after`` is whole seconds to wait (at least 1)."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"Too many requests; retry in {retry_after} s.")
