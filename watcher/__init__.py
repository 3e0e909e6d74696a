"""siip-watcher: consistent, verified backups of a SQLite-backed web application."""

__version__ = "0.1.0"
