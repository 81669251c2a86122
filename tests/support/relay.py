"""Start the real ``emailrelay`` program for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def emailrelay_command() -> list[str]:
    """The installed entry point, run with this interpreter."""
    return [sys.executable, "-m", "emailrelay"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def peak_rss_kb(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM), in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError("condition never became true")


class Relay:
    """One ``emailrelay`` process in the foreground, logging to a file."""

    def __init__(self, tmp: Path, *args: str, port: int | None = None,
                 spool: Path | None = None, wait: bool = True, name: str = "relay",
                 env: dict[str, str] | None = None, prefix: list[str] | None = None,
                 command: list[str] | None = None, user: str = "root") -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.spool = spool or tmp / f"{name}-spool"
        self.log_path = tmp / f"{name}.log"
        interface = [] if "--interface" in args else ["--interface", "127.0.0.1"]
        self.args = ["--no-daemon", "--log", "--verbose", "--user", user, *interface,
                     "--port", str(self.port), "--spool-dir", str(self.spool), *args]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        # prefix: a wrapper such as "ip netns exec <name>" (it must exec the program);
        # command: another program than this checkout's emailrelay.
        self.process = subprocess.Popen(
            [*(prefix or []), *(command or emailrelay_command()), *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp,
            env=None if env is None else {**os.environ, **env})
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"emailrelay exited with {self.process.returncode}:\n"
                                   + self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("emailrelay did not start listening:\n" + self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.02)
        raise TimeoutError(f"log never said {text!r}:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def envelopes(self, suffix: str = ".envelope") -> list[Path]:
        return sorted(p for p in self.spool.glob("emailrelay.*") if p.name.endswith(suffix))

    def contents(self) -> list[Path]:
        return sorted(self.spool.glob("emailrelay.*.content"))


def run_emailrelay(*args: str, timeout: float = 20.0,
                   cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the program to completion (for --help, bad options and the like)."""
    env = dict(os.environ)
    return subprocess.run([*emailrelay_command(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)
