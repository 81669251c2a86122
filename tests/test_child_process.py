"""Running filter and verifier programs: environment, descriptors, limits, timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from emailrelay.process.child import OUTPUT_LIMIT, run_program
from tests.support.helpers import script


def test_only_path_and_ifs_in_the_environment_and_no_shell(tmp_path: Path) -> None:
    program = script(tmp_path, "env.py", "import json, os\nprint(json.dumps(dict(os.environ)))\n",
                     sys.executable)
    result = asyncio.run(run_program([str(program), "$HOME;", "a b"], 10))
    assert result.exit_code == 0
    env = json.loads(result.output)
    assert set(env) - {"LC_CTYPE"} == {"PATH", "IFS"}  # (Python may add LC_CTYPE itself)
    assert env["PATH"] == "/usr/bin:/bin" and env["IFS"] == " \t\n"
    args = asyncio.run(run_program(
        [str(script(tmp_path, "args.sh", 'for a in "$@"; do echo "[$a]"; done\n')),
         "$HOME;", "a b", "*"], 10))
    assert args.output == b"[$HOME;]\n[a b]\n[*]\n"


def test_stdin_and_stderr_are_dev_null_and_own_process_group(tmp_path: Path) -> None:
    program = script(tmp_path, "fds.py", """
import os, sys
print(os.readlink("/proc/self/fd/0"), os.readlink("/proc/self/fd/2"))
print(os.getpgrp() == os.getpid(), os.getpgrp() != int(sys.argv[1]))
print(sys.stdin.read() == "")
""", sys.executable)
    result = asyncio.run(run_program([str(program), str(os.getpgrp())], 10))
    assert result.output.decode().split() == ["/dev/null", "/dev/null", "True", "True",
                                              "True"]


def test_flooding_output_is_drained_but_only_the_start_kept(tmp_path: Path) -> None:
    program = script(tmp_path, "flood.py", """
import sys
sys.stdout.write("<<first>>\\n")
for _ in range(64):
    sys.stdout.write("x" * (1 << 20))
""", sys.executable)
    started = time.monotonic()
    result = asyncio.run(run_program([str(program)], 30))
    assert result.exit_code == 0
    assert len(result.output) == OUTPUT_LIMIT
    assert result.output.startswith(b"<<first>>\n")
    assert time.monotonic() - started < 20


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    program = script(tmp_path, "slow.sh", f"""
sleep 60 &
echo $! > {marker}
echo "<<started>>"
wait
""")
    started = time.monotonic()
    result = asyncio.run(run_program([str(program)], 0.5))
    assert result.timed_out and result.exit_code is None
    assert result.output == b"<<started>>\n"
    assert time.monotonic() - started < 5
    child = int(marker.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child), "the filter's own child survived the timeout"


def test_a_term_ignoring_program_is_killed(tmp_path: Path) -> None:
    program = script(tmp_path, "stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.1; done\n")
    started = time.monotonic()
    result = asyncio.run(run_program([str(program)], 0.3))
    assert result.timed_out
    assert time.monotonic() - started < 5


def test_children_keeping_the_pipe_do_not_delay_the_result(tmp_path: Path) -> None:
    program = script(tmp_path, "daemon.sh", "sleep 30 &\necho done\nexit 0\n")
    started = time.monotonic()
    result = asyncio.run(run_program([str(program)], 20))
    assert result.exit_code == 0 and result.output == b"done\n"
    assert time.monotonic() - started < 5


def test_exec_errors(tmp_path: Path) -> None:
    missing = asyncio.run(run_program([str(tmp_path / "missing")], 5))
    assert missing.exec_error and "No such file" in missing.exec_error
    not_executable = tmp_path / "plain"
    not_executable.write_text("echo hi\n")
    denied = asyncio.run(run_program([str(not_executable)], 5))
    assert denied.exec_error and "ermission" in denied.exec_error


def test_exit_codes_and_signals(tmp_path: Path) -> None:
    assert asyncio.run(run_program(["/bin/sh", "-c", "exit 42"], 5)).exit_code == 42
    assert asyncio.run(run_program(["/bin/sh", "-c", "kill -KILL $$"], 5)).exit_code == -9


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
