"""Crash-consistency harness: SIGKILL a store-and-forward relay under load, then audit.

The real relay runs with ``--forward-to <far side> --forward-on-disconnect --poll 1`` and a
``--filter`` script.  Client threads send mail with Python's smtplib all the time, each
message tagged with a unique ``X-Test-Id`` and a checksum of its body.  The far side is the
scriptable :class:`FakeSmtpServer`, which records what it acknowledged and whether the relay
went on talking after that 250 (if it did, the relay had deleted the message).  In a loop
the relay is killed with SIGKILL and restarted on the same spool and port; each kill is
aimed at one moment (:data:`MODES`):

``random``           any time after start-up;
``data``             while a client is half-way through its DATA;
``stored``           the message is fsynced and published, its 250 not yet sent
                     (the relay's test-only ``EMAILRELAY_TEST_CRASH_AT=stored`` hook);
``far-before-250``   the far side has the whole message and kills the relay before its 250;
``forwarded``        the far side said 250, the relay has not deleted the message yet
                     (``EMAILRELAY_TEST_CRASH_AT=forwarded``);
``filter``           while the ``--filter`` script runs (the script kills its parent).

Each restart also takes the next configuration from :data:`CONFIGS` (``--configs``):
``plain``; ``tls``, STARTTLS on both sides (``--server-tls``, and ``--client-tls
--client-tls-required --client-tls-verify`` to a far side that offers it); ``auth``, SMTP
AUTH on both sides (``--server-auth``, ``--client-auth``); ``tls+auth``, both.  The clients
follow what the relay offers: STARTTLS when it is in the EHLO reply, then AUTH when that
is (without it a ``--server-auth`` relay refuses their mail), so the spool written under
one configuration is forwarded under the next.

At the end a last relay drains the spool and the audit compares what clients were told
(250) with what the far side acknowledged.  Acknowledged messages lost, corrupted content,
``.bad`` envelopes, messages left behind and duplicates not explained by a lost far-side 250
must all be zero.

``python -m tests.support.crash --kills 1000`` (``make crash``) is the long run;
tests/test_crash.py runs a short one in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import signal
import smtplib
import ssl
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.certs import Pki
from tests.support.fakesmtp import FakeSmtpServer, Received, Script
from tests.support.relay import Relay, free_port

MODES = {"random": 30, "data": 15, "stored": 15, "far-before-250": 15, "forwarded": 15,
         "filter": 10}
CONFIGS = ("plain", "tls", "auth", "tls+auth")
CLIENTS = 3
USER, PASSWORD = "alice", "crash-test"
SECRETS = f"server plain {USER} {PASSWORD}\nclient plain {USER} {PASSWORD}\n"
FILTER = """#!/bin/sh
# Crash harness filter: passes every message; when armed, kills the relay (its parent).
if mv {arm} {arm}.taken 2>/dev/null; then kill -9 $PPID; sleep 2; fi
exit 0
"""


def make_message(test_id: str, rng: random.Random) -> tuple[bytes, str]:
    """A message and the checksum of its body."""
    line = rng.randbytes(30).hex().encode() + b"\r\n"
    body = b"." + line + line * rng.randint(1, 600)  # leading dot: stuffing matters
    digest = hashlib.sha256(body).hexdigest()
    head = (f"From: client@example.com\r\nTo: far@example.net\r\nSubject: crash test\r\n"
            f"X-Test-Id: {test_id}\r\nX-Test-Sum: {digest}\r\n\r\n").encode()
    return head + body, digest


def parse_message(content: bytes) -> tuple[str, bool]:
    """The X-Test-Id of a received message and whether its body is intact."""
    head, _, body = content.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n") if b": " in line)
    test_id = fields.get(b"X-Test-Id", b"?").decode()
    return test_id, hashlib.sha256(body).hexdigest().encode() == fields.get(b"X-Test-Sum")


@dataclass
class Figures:
    kills: Counter[str] = field(default_factory=Counter)
    configs: Counter[str] = field(default_factory=Counter)  # kills per configuration
    # Acknowledged messages by how their client sent them ("plain", "tls", "auth",
    # "tls+auth"), and delivered messages by how the relay forwarded them.
    acknowledged_as: Counter[str] = field(default_factory=Counter)
    delivered_as: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)  # aimed kills that never fired
    attempted: int = 0
    acknowledged: int = 0
    received: int = 0  # distinct messages the far side acknowledged
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    unexplained_duplicates: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    unacknowledged_delivered: int = 0
    bad_envelopes: list[str] = field(default_factory=list)
    left_in_spool: list[str] = field(default_factory=list)
    # Content files of delivered messages whose envelope was deleted just before a kill:
    # harmless, and set aside as .orphan by a start-up an hour later.
    stray_contents: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexplained_duplicates or self.corrupted
                    or self.bad_envelopes or self.left_in_spool)

    def summary(self) -> str:
        modes = ", ".join(f"{mode} {self.kills[mode]}" for mode in MODES)
        missed = sum(self.missed.values())

        def by(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {counter[name]}" for name in CONFIGS if counter[name])

        return (f"kills: {sum(self.kills.values())} ({modes}; {missed} aimed kills re-aimed "
                f"at random)\n"
                f"configurations: kills {by(self.configs)}; acknowledged "
                f"{by(self.acknowledged_as)}; forwarded {by(self.delivered_as)}\n"
                f"messages: {self.attempted} attempted, {self.acknowledged} acknowledged (250), "
                f"{self.received} received by the far side "
                f"({self.unacknowledged_delivered} of them never acknowledged to the client)\n"
                f"lost: {len(self.lost)}, duplicated: {self.duplicates} (unexplained: "
                f"{len(self.unexplained_duplicates)}), corrupted: {len(self.corrupted)}, "
                f".bad: {len(self.bad_envelopes)}, left in spool: {len(self.left_in_spool)} "
                f"(and {self.stray_contents} content files of delivered messages)\n"
                f"time: {self.seconds:.0f}s")


class Clients:
    """Threads sending mail through the relay with smtplib, reconnecting after each kill."""

    def __init__(self, port: int, count: int, seed: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls  # trusts the relay's certificate: STARTTLS when offered
        self.stop = threading.Event()
        self.mid_data = threading.Event()  # a client is half-way through DATA
        self.lock = threading.Lock()
        self.attempted: set[str] = set()
        self.acknowledged: set[str] = set()
        self.acknowledged_as: Counter[str] = Counter()
        self.threads = [threading.Thread(target=self._run, args=(n, seed + n), daemon=True)
                        for n in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, number: int, seed: int) -> None:
        rng = random.Random(seed)
        sequence = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
                    how = self._hello(smtp)
                    for _ in range(rng.randint(1, 3)):
                        sequence += 1
                        self._send(smtp, f"c{number}-{sequence}", rng, how)
                        if self.stop.is_set():
                            break
            except (OSError, smtplib.SMTPException):
                time.sleep(rng.uniform(0.01, 0.05))

    def _hello(self, smtp: smtplib.SMTP) -> str:
        """EHLO, STARTTLS and AUTH as far as the relay offers them: how the mail goes."""
        smtp.ehlo("client.example")
        how = []
        if self.tls is not None and smtp.has_extn("starttls"):
            smtp.starttls(context=self.tls)
            smtp.ehlo("client.example")
            how.append("tls")
        if smtp.has_extn("auth"):
            smtp.login(USER, PASSWORD)
            how.append("auth")
        return "+".join(how) or "plain"

    def _send(self, smtp: smtplib.SMTP, test_id: str, rng: random.Random, how: str) -> None:
        message, _ = make_message(test_id, rng)
        data = message.replace(b"\r\n.", b"\r\n..")
        data += b".\r\n"  # the message ends with CRLF already
        with self.lock:
            self.attempted.add(test_id)
        code, _ = smtp.mail("client@example.com")
        code2, _ = smtp.rcpt("far@example.net")
        if code != 250 or code2 != 250:
            raise smtplib.SMTPException("refused")
        code, _ = smtp.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPException("DATA refused")
        half = len(data) // 2
        smtp.send(data[:half])
        self.mid_data.set()
        time.sleep(0.005)
        smtp.send(data[half:])
        code, _ = smtp.getreply()
        if code == 250:
            with self.lock:
                self.acknowledged.add(test_id)
                self.acknowledged_as[how] += 1


class CrashRun:
    def __init__(self, work: Path, seed: int = 1, configs: tuple[str, ...] = CONFIGS) -> None:
        self.work = work
        self.configs = configs
        self.rng = random.Random(seed)
        self.seed = seed
        self.port = free_port()
        self.spool = work / "spool"
        self.arm = work / "filter.arm"
        self.filter = work / "filter.sh"
        self.filter.write_text(FILTER.format(arm=self.arm))
        self.filter.chmod(0o755)
        self.pki = Pki(work)
        self.certificate = self.pki.pem()  # the relay's and the far side's
        self.secrets = work / "secrets"
        self.secrets.write_text(SECRETS)
        self.secrets.chmod(0o600)
        far_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        far_tls.load_cert_chain(self.certificate)
        self.far = FakeSmtpServer(Script(on_end=self._far_end, tls=far_tls, auth=True))
        self.far_armed = threading.Event()
        self.relay: Relay | None = None
        self.figures = Figures()

    def _far_end(self, message: Received) -> bool:
        """The far side's hook: when armed, kill the relay before answering its data."""
        if self.far_armed.is_set() and self.relay is not None:
            self.far_armed.clear()
            os.kill(self.relay.process.pid, signal.SIGKILL)
            return False
        return True

    def _options(self, config: str) -> list[str]:
        options = []
        if "tls" in config.split("+"):
            options += ["--server-tls", "--server-tls-certificate", str(self.certificate),
                        "--client-tls", "--client-tls-required",
                        "--client-tls-verify", str(self.pki.ca_file)]
        if "auth" in config.split("+"):
            options += ["--server-auth", str(self.secrets), "--client-auth", str(self.secrets)]
        return options

    def _start(self, crash_at: str | None = None, config: str = "plain") -> Relay:
        env = {"EMAILRELAY_TEST_CRASH_AT": crash_at} if crash_at else {}
        for _ in range(50):
            relay = Relay(self.work, "--forward-to", self.far.address,
                          "--forward-on-disconnect", "--poll", "1",
                          "--retry-delay", "1", "--retry-max-delay", "2",
                          "--filter", str(self.filter), *self._options(config),
                          port=self.port, spool=self.spool, env=env, wait=False)
            self.relay = relay
            try:
                relay.wait_listening()
                return relay
            except RuntimeError:
                if relay.process.returncode == -signal.SIGKILL:
                    return relay  # its crash point fired while it was starting
                relay.stop()
                time.sleep(0.1)  # the port is not free yet after a kill: try again
        raise RuntimeError("the relay does not start again")

    def _dies_within(self, seconds: float) -> bool:
        assert self.relay is not None
        with contextlib.suppress(Exception):
            self.relay.process.wait(seconds)
        return self.relay.process.poll() is not None

    def kill_once(self, clients: Clients, config: str = "plain") -> str:
        mode = self.rng.choices(list(MODES), weights=list(MODES.values()))[0]
        relay = self._start(mode if mode in ("stored", "forwarded") else None, config)
        if mode == "random":
            time.sleep(self.rng.uniform(0.0, 0.8))
        elif mode == "data":
            clients.mid_data.clear()
            if not clients.mid_data.wait(10):
                mode = "random"
        elif mode == "far-before-250":
            self.far_armed.set()
        elif mode == "filter":
            self.arm.touch()
        if mode != "random" and mode != "data" and not self._dies_within(10):
            self.figures.missed[mode] += 1
            mode = "random"
        self.far_armed.clear()
        self.arm.unlink(missing_ok=True)
        relay.process.kill()
        relay.stop()
        self.figures.kills[mode] += 1
        self.figures.configs[config] += 1
        return mode

    def run(self, kills: int, clients_count: int = CLIENTS, progress: bool = False) -> Figures:
        started = time.monotonic()
        with self.far:
            clients = Clients(self.port, clients_count, self.seed * 100,
                              self.pki.client_context())
            clients.start()
            try:
                for n in range(kills):
                    self.kill_once(clients, self.configs[n % len(self.configs)])
                    if progress and (n + 1) % 50 == 0:
                        print(f"crash: {n + 1} kills, {len(clients.acknowledged)} "
                              f"acknowledged, {len(self.far.messages)} received", flush=True)
            finally:
                clients.finish()
            self._drain()
        self._audit(clients)
        self.figures.seconds = time.monotonic() - started
        return self.figures

    def _drain(self, patience: float = 30.0) -> None:
        """A last relay without faults forwards what is left; stop once nothing moves."""
        relay = self._start(config=self.configs[-1])
        last, moved = -1, time.monotonic()
        while time.monotonic() - moved < patience:
            waiting = sum(1 for p in self.spool.glob("emailrelay.*.envelope*")
                          if not p.name.endswith(".bad"))
            if not waiting:
                break
            if waiting != last:
                last, moved = waiting, time.monotonic()
            time.sleep(0.2)
        relay.stop()

    def _audit(self, clients: Clients) -> None:
        f = self.figures
        receipts: dict[str, list[Received]] = {}
        for message in self.far.messages:
            test_id, intact = parse_message(message.content)
            receipts.setdefault(test_id, []).append(message)
            if not intact:
                f.corrupted.append(test_id)
        f.attempted = len(clients.attempted)
        f.acknowledged = len(clients.acknowledged)
        f.acknowledged_as = clients.acknowledged_as
        for message in self.far.messages:
            how = [name for name, used in (("tls", message.tls), ("auth", message.user))
                   if used]
            f.delivered_as["+".join(how) or "plain"] += 1
        f.received = len(receipts)
        f.lost = sorted(clients.acknowledged - receipts.keys())
        f.unacknowledged_delivered = len(receipts.keys() - clients.acknowledged)
        for test_id, copies in receipts.items():
            f.duplicates += len(copies) - 1
            unconfirmed = sum(1 for m in copies[:-1] if not m.confirmed)
            if len(copies) - 1 > unconfirmed:
                f.unexplained_duplicates.append(test_id)
        f.bad_envelopes = sorted(p.name for p in self.spool.glob("*.envelope.bad"))
        for path in sorted(self.spool.glob("emailrelay.*")):
            message_id = path.name.removesuffix(".content")
            stray = (path.name.endswith(".content")
                     and not any(self.spool.glob(message_id + ".envelope*"))
                     and parse_message(path.read_bytes())[0] in receipts)
            if stray:
                f.stray_contents += 1
            elif not path.name.endswith(".bad"):
                f.left_in_spool.append(path.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="configurations to rotate through, one per restart "
                             f"(default {','.join(CONFIGS)})")
    parser.add_argument("--work", type=Path, help="keep the spool and logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emailrelay-crash-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        configs = tuple(args.configs.split(","))
        if not set(configs) <= set(CONFIGS):
            parser.error(f"--configs: choose from {','.join(CONFIGS)}")
        figures = CrashRun(work, args.seed, configs).run(args.kills, progress=True)
    print(figures.summary())
    for name in ("lost", "unexplained_duplicates", "corrupted", "bad_envelopes",
                 "left_in_spool"):
        if getattr(figures, name):
            print(f"{name}: {getattr(figures, name)[:20]}")
    return 0 if figures.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
