"""The JSON text of every ``--json`` command and of the monitor's ``/api/status``: one
function, so `status --json` and ``/api/status`` stay the same bytes and scripts parse every
command alike.

UTF-8 is kept as is (file names in Spanish stay readable), two-space indent, a value JSON has
no type for (a datetime, a path) written as its ``str``, and one newline at the end.
"""

from __future__ import annotations

import json
from typing import Any


def json_text(data: Any) -> str:
    """``data`` as the text a ``--json`` command prints."""
    return json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
