"""The long-running service: watching, deciding when to run, the daemon and its status."""
