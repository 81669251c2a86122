"""`emailrelay-filter-copy`: not implemented yet (see the project's issues)."""

from __future__ import annotations

import sys


def main() -> int:
    print("emailrelay-filter-copy: not implemented yet", file=sys.stderr)
    return 1
