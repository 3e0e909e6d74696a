"""`prune`: apply retention now, locally and at each destination, as a run does after its
snapshot."""

from __future__ import annotations

from contextlib import ExitStack

from watcher.backup.prune import PruneResult, apply_retention
from watcher.backup.run import run_lock
from watcher.config.settings import Config
from watcher.destinations.registry import enabled_destinations
from watcher.state.catalog import Catalog
from watcher.state.inventory import reconcile
from watcher.state.store import LocalStore


def prune_now(cfg: Config, *, dry_run: bool = False) -> PruneResult:
    """Prune (or, with ``dry_run``, only say what would go) under the run lock, so no
    snapshot is taken meanwhile; raises :class:`watcher.state.lock.LockBusy` while one is."""
    store = LocalStore(cfg)
    store.ensure()
    with ExitStack() as opened:
        destinations = [opened.enter_context(d) for d in enabled_destinations(cfg)]
        with run_lock(cfg):
            catalog = Catalog(store.dir)
            reconcile(catalog, store)
            return apply_retention(cfg, catalog, store, destinations, dry_run=dry_run)
