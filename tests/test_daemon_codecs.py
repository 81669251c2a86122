"""Codecs the relay uses after dropping privileges are loaded before: the --user account
may not be able to read the interpreter's library (found by tests/test_privileges.py, where
Python lives under /root: the first --verbose trace line was a LookupError)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh interpreter: drop "privileges" (to root itself, so that nothing really
# changes), then make every further import of a codec module fail, as it does for a user
# who cannot read the library; the codecs must work all the same.
SCRIPT = """
import os, sys
from unittest import mock
from emailrelay.process import daemon

class Unreadable:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("encodings."):
            raise ImportError(f"cannot read {name}")

with mock.patch("os.setuid"), mock.patch("os.setgid"), mock.patch("os.setgroups"):
    daemon.drop_privileges("nobody", [])
sys.meta_path.insert(0, Unreadable())
print("caf\\u00e9\\r".encode("unicode_escape"), "b\\u00fccher.example".encode("idna"))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="needs os.geteuid() == 0")
def test_codecs_used_after_the_switch_are_loaded_before_it() -> None:
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "b'caf\\\\xe9\\\\r' b'xn--bcher-kva.example'"
