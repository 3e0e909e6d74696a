"""The Google Drive destination: auth, transport, resumable upload, errors, setup."""
