"""Configuration: the typed settings, the starter file, and the old routine's import."""
