"""notify: push notifications for Django on Channels (see docs/protocol.md)."""

__version__ = "0.1.0"
