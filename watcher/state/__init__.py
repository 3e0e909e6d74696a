"""What lives in the local backup folder: archives, the catalog, the run lock."""
