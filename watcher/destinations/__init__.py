"""Where snapshots are copied after they are stored locally: one module per service."""

from watcher.destinations.base import Destination, DestinationError, RemoteFile, SetupError

__all__ = ["Destination", "DestinationError", "RemoteFile", "SetupError"]
