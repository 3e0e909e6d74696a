"""Writing one snapshot: consistent database copies and the tree, streamed into a .tar.zst."""
