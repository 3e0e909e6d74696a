"""The archive format and reading it back: names and sidecars, manifest, verify, restore."""
