"""age encryption of the copies that leave the local dir (docs/encryption.md)."""
