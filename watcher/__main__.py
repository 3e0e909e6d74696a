"""`python -m watcher` is the same program as `siip-watcher`."""

from watcher.cli import main

raise SystemExit(main())
