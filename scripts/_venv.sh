# Sourced by scripts/demo and scripts/test: make ./.venv with the project installed in it.
# Re-installs only when pyproject.toml changed, so repeated runs start at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SIIP_WATCHER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
extras="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up $VENV ..." >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
stamp="$VENV/.installed-$( (cat "$ROOT/pyproject.toml"; echo "$extras") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing siip-watcher${extras:+[$extras]} into $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
