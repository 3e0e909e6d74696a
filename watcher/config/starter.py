"""The commented starter configuration (`config init`, and config/siip-watcher.example.toml).

One text for both, so the example in the repository and what `config init` writes never drift
(a test compares them).
"""

from __future__ import annotations

STARTER = '''\
# siip-watcher configuration. Every key can also be set by an environment variable
# SIIP_WATCHER_<SECTION>_<KEY> (for example SIIP_WATCHER_DRIVE_FOLDER_ID); top-level `name` is
# SIIP_WATCHER_NAME. Relative paths are relative to this file's folder. Every number has the
# range given beside it; a value outside it (or inf, or nan) is refused.
# Check it with: siip-watcher -c THIS_FILE config check

name = "siip"                     # archive prefix: siip-20261127T181500Z.tar.zst

[source]
root = "/srv/siip"                # the project folder to back up
# SQLite databases, relative to root or absolute. Each is copied with SQLite's online backup
# API while the app keeps writing, then checked with PRAGMA quick_check (`verify` runs the
# full integrity_check on the archived copy).
databases = ["siip_database.db"]
# Also copy that way every other SQLite database found under root (a chat, sessions or a
# queue the app added later), recognised by its header when its name ends in .db, .sqlite,
# .sqlite3, .db3, .s3db or .sl3 or a -wal or -journal lies beside it; restored at its place
# in the tree. Excluded files are not looked at. Databases outside root must be listed above.
# false: archive such files as they lie on disk, which can tear while the app writes.
discover_databases = true
# gitignore syntax. The backup dir itself and the databases' -wal/-shm/-journal files are
# always left out.
exclude = ["__pycache__/", "*.pyc", ".git/", "venv/", ".venv/"]
lock_timeout_seconds = 300        # wait this long for a database another program keeps
                                  # locked, logging every 30 s; then the run fails (1 to 86400)

[schedule]                        # used by `siip-watcher start`
enabled = true                    # old BACKUP_ENABLED
interval_hours = 24               # old BACKUP_INTERVAL_HOURS; fractions allowed, from
                                  # 0.0003 (a second) to 744 (31 days)
only_if_changed = true            # an interval with no change is skipped (and logged)
debounce_seconds = 300            # after heavy change, wait for this much quiet (0 to 86400)...
max_delay_seconds = 3600          # ...but never longer than this after the first change
                                  # (debounce_seconds to 604800)
heavy_change_events = 200         # this many changes since the last run = heavy change
                                  # (1 to 10000000)
watch = "auto"                    # auto | native | polling (network filesystems: polling)
stop_timeout_seconds = 30         # on stop, let a running snapshot finish this long (0 to 3600)

[local]
dir = "/var/backups/siip"         # old BACKUP_LOCAL_DIR; snapshots and the catalog live here

[retention]                       # applies locally and at each destination; each 0 to 10000
keep_last = 3                     # the newest N snapshots (at least 1)
keep_daily = 7                    # the newest snapshot of each of the last N days
keep_weekly = 4                   # ... of each of the last N weeks
keep_monthly = 12                 # ... of each of the last N months

[canary]                          # data-loss alerts: compare each snapshot with the previous one
enabled = true                    # alert on an empty database, one that lost half its pages,
                                  # many files gone or changed at once, or files turned random
changed_share = 0.3               # alert when more than this share of the files go or change
release_after_days = 7            # while an alert holds, nothing is pruned; `siip-watcher ack`
                                  # releases it, or this many days of runs without an alert
                                  # (0 = only ack), up to 365

[compression]
level = 3                         # zstd level, -7 to 22; 3 is fast, higher is slow for little gain
threads = 0                       # 0 = all cores; at most 256

[snapshot]
full_every_days = 7               # a full archive at least every N days, deltas in between;
                                  # 0 to 365; 0 = every snapshot is a full archive
max_delta_ratio = 0.5             # 0.01 to 1: a delta over this share of its full is a full

[drive]
enabled = false
folder_id = ""                    # old BACKUP_DRIVE_FOLDER_ID: the last part of the folder URL
auth = "oauth"                    # oauth (a personal or office account) | service_account
credentials_file = ""             # OAuth client JSON, or the service-account key JSON
token_file = ""                   # where `siip-watcher drive login` keeps the token (0600)
shared_drive_id = ""              # service accounts must upload into a shared drive
impersonate = ""                  # domain-wide delegation subject, if any
chunk_mib = 16                    # largest upload chunk, 1 to 1024 (rounded to 256 KiB)
api_root = "https://www.googleapis.com/"

[folder]                          # a second copy on a mounted NAS share or a USB disk
enabled = false
# A folder inside the share or on the disk (not its mount point: an unmounted share leaves an
# empty mount point behind) and outside local.dir. `config check` wants it to exist; while it
# is missing during a run, each copy waits in the upload queue and is sent once it is back.
path = ""

[rclone]                          # copies on OneDrive, Dropbox, an SFTP NAS, S3... (docs/rclone.md)
enabled = false
remote = ""                       # an rclone remote and a folder in it: "onedrive:Respaldos/siip"
config_file = ""                  # the rclone.conf with that remote ("": rclone's own lookup)
binary = ""                       # "": the rclone installed with siip-watcher

[encryption]                      # age encryption of every copy that leaves local.dir
# Public keys (age1...) from `siip-watcher key generate` run on another machine; every copy
# at Drive, in [folder] and at [rclone] is then encrypted for all of them (any one's private
# key opens it), at most 20 in all. Only public keys here: the private key never goes on the
# server.
recipients = []
recipients_file = ""              # or a file of public keys, one per line (as `age -R` reads)
# Also encrypt the archives in local.dir: a stolen backup disk then holds nothing readable,
# but restoring or verifying on this server needs the private key too (--identity).
local = false

[email]
enabled = false
smtp_host = "smtp.gmail.com"      # old BACKUP_SMTP_SERVER
smtp_port = 587                   # old BACKUP_SMTP_PORT; 587 starttls, 465 ssl
security = "starttls"             # starttls | ssl | none
username = ""                     # old BACKUP_SMTP_USER
# The password never sits in this file: it is read from this environment variable...
password_env = "SIIP_WATCHER_SMTP_PASSWORD"
password_file = ""                # ...or from this file (mode 0600), e.g. a systemd credential
ca_file = ""                      # extra CA bundle, e.g. for a self-hosted relay
sender = ""                       # the From address (defaults to username)
to = []                           # old BACKUP_EMAIL_TO
on = ["success", "failure", "recovery"]   # warnings are always mailed
language = "es"                   # es | en
timeout_seconds = 30              # per answer from the server, 0.1 to 3600

[heartbeat]
url = ""                          # GET after a good run, URL + "/fail" after a failed one

[web]                             # the monitor page and /metrics, served by `siip-watcher start`
enabled = true
# Where the page listens. A loopback address (127.0.0.1, ::1, localhost) is reachable from
# this machine only; any other address needs an access token, or the service refuses to start.
listen = "127.0.0.1:8765"
language = ""                     # es | en; empty = the same as email.language
# The access token never sits in this file: it is read from this environment variable...
token_env = "SIIP_WATCHER_WEB_TOKEN"
token_file = ""                   # ...or from this file (mode 0600)

[log]
file = ""                         # optional rotating log file; stderr always
level = "info"                    # debug | info | warning | error
'''


def starter_toml() -> str:
    """The commented starter configuration file."""
    return STARTER
