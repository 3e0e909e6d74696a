"""Helpers for the Drive tests: credentials the real google-auth accepts, pointed at
:mod:`fakedrive`, and destinations with test-sized chunks and retry delays."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scripts.fakedrive import DriveServer
from tests.helpers import toml_table
from watcher.config.settings import DriveConfig
from watcher.destinations.gdrive.destination import GoogleDriveDestination
from watcher.retry import RetryPolicy

CHUNK = 256 * 1024
CLIENT_ID = "test-client.apps.googleusercontent.com"
CLIENT_SECRET = "test-client-secret"
SA_EMAIL = "backup@siip-test.iam.gserviceaccount.com"
#: fast enough for tests, same shape as production (exponential, jittered, bounded)
FAST_RETRY = RetryPolicy(attempts=5, base=0.01, cap=0.05)


@functools.cache
def _rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_key(server: DriveServer, path: Path, *, email: str = SA_EMAIL,
                        delegation: bool = False) -> Path:
    """A real service-account key file whose token_uri is the local server's."""
    key = _rsa_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    server.state.add_service_account(email, key.public_key(), delegation=delegation)
    info = {"type": "service_account", "project_id": "siip-test", "private_key_id": "k1",
            "private_key": pem, "client_email": email, "client_id": "1234567890",
            "token_uri": server.token_uri}
    path.write_text(json.dumps(info))
    os.chmod(path, 0o600)
    return path


def user_token(server: DriveServer, path: Path, *, client_id: str = CLIENT_ID) -> Path:
    """A refreshable user sign-in as `drive login` stores it, for the local server."""
    server.state.add_oauth_client(client_id, CLIENT_SECRET)
    rt = server.state.issue_refresh_token(client_id)
    path.write_text(json.dumps({"refresh_token": rt, "client_id": client_id,
                                "client_secret": CLIENT_SECRET, "token_uri": server.token_uri,
                                "scopes": ["https://www.googleapis.com/auth/drive.file"]}))
    os.chmod(path, 0o600)
    return path


def client_file(server: DriveServer, path: Path) -> Path:
    """An OAuth "Desktop app" client JSON whose token_uri is the local server's."""
    server.state.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    path.write_text(json.dumps({"installed": {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "project_id": "siip-test",
        "auth_uri": server.url + "o/oauth2/auth", "token_uri": server.token_uri,
        "redirect_uris": ["http://localhost"]}}))
    return path


def drive_config(server: DriveServer, tmp: Path, *, auth: str = "oauth", folder_id: str = "",
                 shared_drive_id: str = "", impersonate: str = "") -> DriveConfig:
    """A DriveConfig for the local server; credentials files are written under ``tmp``."""
    if auth == "oauth":
        creds = client_file(server, tmp / "client.json")
        token = user_token(server, tmp / "token.json")
        if not folder_id and not shared_drive_id:
            folder_id = server.state.add_folder("siip backups", visible_to={CLIENT_ID})
        return DriveConfig(enabled=True, folder_id=folder_id, auth="oauth",
                           credentials_file=str(creds), token_file=str(token),
                           api_root=server.url)
    key = service_account_key(server, tmp / "sa.json", delegation=bool(impersonate))
    return DriveConfig(enabled=True, folder_id=folder_id, auth="service_account",
                       credentials_file=str(key), shared_drive_id=shared_drive_id,
                       impersonate=impersonate, api_root=server.url)


def drive_settings(cfg: DriveConfig) -> dict[str, Any]:
    """The [drive] keys of a configuration that reaches ``cfg``'s folder and server."""
    return {"enabled": cfg.enabled, "folder_id": cfg.folder_id,
            "credentials_file": cfg.credentials_file, "token_file": cfg.token_file,
            "api_root": cfg.api_root}


def drive_section(server: DriveServer, tmp: Path) -> str:
    """A [drive] section of a configuration file for ``server`` (credentials written under
    ``tmp/creds``, 1 MiB chunks so that a small project takes several)."""
    creds = tmp / "creds"
    creds.mkdir()
    return toml_table("drive", {**drive_settings(drive_config(server, creds)), "chunk_mib": 1})


def shared_drive_config(server: DriveServer, tmp: Path, *,
                        role: str = "organizer") -> DriveConfig:
    """A service account that is a member of a shared drive with ``role`` ("organizer" is
    Manager, "fileOrganizer" Content manager), uploading to its top level."""
    server.state.add_shared_drive("0AshareD", {SA_EMAIL: role})
    return drive_config(server, tmp, auth="service_account", shared_drive_id="0AshareD")


def make_drive(cfg: DriveConfig, *, chunk: int = CHUNK, timeout: float = 5.0,
               retry: RetryPolicy = FAST_RETRY, rate_retry: RetryPolicy = FAST_RETRY,
               **kw: Any) -> GoogleDriveDestination:
    return GoogleDriveDestination(cfg, chunk_size=chunk, timeout=timeout, retry=retry,
                                  rate_retry=rate_retry, **kw)


def make_archive(folder: Path, snapshot_id: str, size: int, seed: int = 0) -> tuple[Path, str]:
    """An archive-like file of ``size`` pseudo-random bytes; returns (path, sha256)."""
    block = hashlib.sha256(f"{snapshot_id}-{seed}".encode()).digest()
    data = bytearray()
    counter = 0
    while len(data) < size:
        data += hashlib.sha256(block + counter.to_bytes(8, "big")).digest() * 64
        counter += 1
    path = folder / f"{snapshot_id}.tar.zst"
    path.write_bytes(bytes(data[:size]))
    return path, hashlib.sha256(data[:size]).hexdigest()


def with_root(cfg: DriveConfig, url: str) -> DriveConfig:
    return replace(cfg, api_root=url)
