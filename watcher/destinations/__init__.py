"""Where snapshots are copied after they are stored locally: one module per service."""

from watcher.destinations.base import Destination, DestinationError, RemoteFile

__all__ = ["Destination", "DestinationError", "RemoteFile"]
