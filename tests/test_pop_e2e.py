"""The real program's POP3 server with real clients: poplib, curl, fetchmail and getmail6."""

from __future__ import annotations

import asyncio
import os
import poplib
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from emailrelay.app import instance as instance_module
from emailrelay.options.parser import parse
from emailrelay.pop.session import FAILURE_DELAY
from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool
from tests.support.logs import captured_log
from tests.support.relay import Relay, free_port, peak_rss_kb, run_emailrelay, wait_for_port

CAROL_MD5 = "x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw="  # "my password"
ACCOUNTS = f"server plain alice secret\nserver md5 carol {CAROL_MD5}\n"

needs = {name: pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed")
         for name in ("curl", "fetchmail", "getmail")}


@dataclass
class PopRelay:
    relay: Relay
    port: int

    def login(self, user: str = "alice", password: str = "secret") -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", self.port, timeout=10)
        client.user(user)
        client.pass_(password)
        return client

    def raw(self) -> Raw:
        return Raw(socket.create_connection(("127.0.0.1", self.port), timeout=10))

    @property
    def spool(self) -> Path:
        return self.relay.spool


class Raw:
    """A hand-driven POP3 connection for input no client library would send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def ask(self, data: str | bytes) -> str:
        self.sock.sendall(data.encode() + b"\r\n" if isinstance(data, str) else data)
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def start_pop(start_relay, tmp_path: Path, *args: str, accounts: str = ACCOUNTS,
              name: str = "relay", spool: Path | None = None) -> PopRelay:
    auth = tmp_path / f"{name}.auth"
    auth.write_text(accounts)
    auth.chmod(0o600)
    port = free_port()
    relay = start_relay("--pop", "--pop-port", str(port), "--pop-auth", str(auth), *args,
                        name=name, spool=spool)
    wait_for_port(port)
    return PopRelay(relay, port)


def send(relay: Relay, subject: str, body: str = "hello\n") -> None:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "reader@example.net"
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.send_message(msg)


def subjects(client: poplib.POP3) -> list[str]:
    found = []
    for n in range(1, client.stat()[0] + 1):
        for line in client.top(n, 0)[1]:
            if line.startswith(b"Subject: "):
                found.append(line[9:].decode())
    return found


def spool_files(spool: Path) -> list[str]:
    return sorted(str(p.relative_to(spool)) for p in spool.rglob("*") if p.is_file())


# -- real clients -----------------------------------------------------------------------------

def test_poplib_reads_and_deletes_and_the_spool_follows(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    for subject in ("first", "second", "third"):
        send(pop.relay, subject, f"body of {subject}\n.leading dot\n")
    client = pop.login()
    count, octets = client.stat()
    sizes = {int(n): int(s) for n, s in (e.split() for e in client.list()[1])}
    uids = [e.split()[1].decode() for e in client.uidl()[1]]
    assert count == 3 and sum(sizes.values()) == octets
    assert uids == [p.name for p in sorted(pop.relay.contents(), key=lambda p: p.name)]
    response, lines, size = client.retr(2)
    assert response == f"+OK {sizes[2]} octets".encode() and size == sizes[2]
    assert b"Subject: second" in lines and b".leading dot" in lines
    assert sum(len(line) + 2 for line in lines) == sizes[2]  # RFC 1939 count, no stuffing
    assert client.dele(2).startswith(b"+OK")
    assert client.quit() == b"+OK signing off"
    remaining = spool_files(pop.spool)
    assert len(remaining) == 4 and uids[1] not in remaining
    assert subjects(pop.login()) == ["first", "third"]
    pop.relay.wait_for_log("pop: deleted 1 message from")


def test_uidls_are_stable_across_restarts(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "one")
    send(pop.relay, "two")
    client = pop.login()
    before = client.uidl()[1]
    client.quit()
    pop.relay.stop()
    again = start_pop(start_relay, tmp_path, name="again", spool=pop.spool)
    client = again.login("carol", "my password")
    assert client.uidl()[1] == before
    client.quit()


@needs["curl"]
@pytest.mark.parametrize("login", ["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=CRAM-MD5", "AUTH=+APOP",
                                   "AUTH=*"])
def test_curl_logs_in_every_way_and_lists(start_relay, tmp_path: Path, login: str) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "for curl")
    user = "carol:my password" if login == "AUTH=CRAM-MD5" else "alice:secret"
    done = subprocess.run(["curl", "-sS", "--login-options", login, "-u", user,
                           f"pop3://127.0.0.1:{pop.port}/"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    (size,) = (int(line.split()[1]) for line in done.stdout.splitlines())
    assert size == pop.relay.contents()[0].stat().st_size


@needs["curl"]
def test_curl_retrieves_and_deletes(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "fetched by curl", "curl body\n")
    url = f"pop3://127.0.0.1:{pop.port}/1"
    done = subprocess.run(["curl", "-sS", "-u", "alice:secret", url], capture_output=True,
                          timeout=30)
    assert done.returncode == 0 and b"Subject: fetched by curl" in done.stdout
    assert done.stdout.endswith(b"curl body\r\n")
    done = subprocess.run(["curl", "-sS", "-u", "alice:secret", "-X", "DELE", "-I", url],
                          capture_output=True, timeout=30)
    assert done.returncode == 0
    assert spool_files(pop.spool) == []


@needs["curl"]
def test_curl_with_a_wrong_password_fails(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    done = subprocess.run(["curl", "-sS", "--login-options", "AUTH=PLAIN", "-u", "alice:wrong",
                           f"pop3://127.0.0.1:{pop.port}/"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 67  # CURLE_LOGIN_DENIED


def mbox_messages(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("Subject: ")]


@needs["fetchmail"]
def test_fetchmail_fetches_into_a_mailbox_and_deletes(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    for subject in ("fetch one", "fetch two"):
        send(pop.relay, subject, "line\n.dot line\n")
    home, mbox = tmp_path / "home", tmp_path / "fetched.mbox"
    home.mkdir()
    rc = home / "fetchmailrc"
    rc.write_text("set no syslog\n"
                  f"poll 127.0.0.1 protocol pop3 port {pop.port} user \"carol\" password "
                  f"\"my password\" is root here mda \"/bin/sh -c 'cat >> {mbox}'\"\n")
    rc.chmod(0o600)
    done = subprocess.run(["fetchmail", "-f", str(rc), "--idfile", str(home / "ids"), "-v",
                           "--nokeep", "--sslproto", ""],  # plain POP3: no TLS here yet
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AUTH CRAM-MD5" in done.stdout + done.stderr  # with an md5 (hashed) secret
    assert mbox_messages(mbox) == ["Subject: fetch one", "Subject: fetch two"]
    assert ".dot line" in mbox.read_text()
    assert spool_files(pop.spool) == []


@needs["getmail"]
def test_getmail_fetches_into_an_mbox_and_deletes(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    for subject in ("get one", "get two", "get three"):
        send(pop.relay, subject)
    home, mbox = tmp_path / "getmail", tmp_path / "got.mbox"
    home.mkdir()
    (home / "getmailrc").write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
        f"port = {pop.port}\nusername = alice\npassword = secret\n\n"
        "[destination]\ntype = MDA_external\npath = /bin/sh\n"
        f"arguments = (\"-c\", \"cat >> {mbox}\")\nunixfrom = true\n"
        "allow_root_commands = true\n\n"  # the tests run as root
        "[options]\ndelete = true\nread_all = true\n")
    done = subprocess.run(["getmail", "--rcfile", str(home / "getmailrc"), "--getmaildir",
                           str(home)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert mbox_messages(mbox) == ["Subject: get one", "Subject: get two", "Subject: get three"]
    assert spool_files(pop.spool) == []


# -- bad input --------------------------------------------------------------------------------

def test_wrong_password_is_refused_after_a_delay(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    raw = pop.raw()
    assert raw.ask("USER alice") == "+OK user: alice"
    started = time.monotonic()
    assert raw.ask("PASS Guess-9z") == "-ERR [AUTH] authentication failed"
    assert time.monotonic() - started >= FAILURE_DELAY * 0.9
    assert raw.ask("STAT") == "-ERR log in first"
    raw.close()
    log = pop.relay.wait_for_log("failed authentication")
    assert ("warning: failed authentication of remote client using mechanism [plain] and "
            "user [alice]: wrong password") in log
    assert "Guess-9z" not in log


def test_commands_before_login_and_unknown_commands(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    raw = pop.raw()
    for command in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 0", "NOOP", "RSET"):
        assert raw.ask(command) == "-ERR log in first"
    assert raw.ask("HELO there") == "-ERR unknown command"
    assert raw.ask("QUIT") == "+OK signing off"
    raw.close()


def test_unknown_message_numbers(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "only one")
    client = pop.login()
    for call, reply in ((lambda: client.retr(2), b"-ERR no such message"),
                        (lambda: client.dele(0), b"-ERR no such message"),
                        (lambda: client.list("x"), b"-ERR invalid message number"),
                        (lambda: client.top(1, -1), b"-ERR invalid arguments")):
        with pytest.raises(poplib.error_proto) as info:
            call()
        assert info.value.args[0] == reply
    client.dele(1)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(1)
    client.rset()
    assert client.retr(1)[0].startswith(b"+OK")
    client.quit()
    assert len(spool_files(pop.spool)) == 2


def test_over_long_lines(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    raw = pop.raw()
    assert raw.ask("USER " + "x" * 100000) == "-ERR line too long"
    assert raw.ask(b"NOOP" + b"y" * 70000 + b"\r\nUSER alice\r\n") == "-ERR line too long"
    assert raw.line() == "+OK user: alice"
    assert raw.ask("PASS secret") == "+OK"
    assert raw.ask("STAT") == "+OK 0 0"
    raw.close()


def test_a_client_that_drops_before_quit_deletes_nothing(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "keep me")
    send(pop.relay, "keep me too")
    before = spool_files(pop.spool)
    raw = pop.raw()
    raw.ask("USER alice")
    assert raw.ask("PASS secret") == "+OK"
    assert raw.ask("STAT").startswith("+OK 2 ")
    assert raw.ask("DELE 1") == "+OK"
    assert raw.ask("DELE 2") == "+OK"
    raw.close()  # no QUIT
    pop.relay.wait_for_log("pop connection closed: disconnected before QUIT")
    assert spool_files(pop.spool) == before
    assert subjects(pop.login()) == ["keep me", "keep me too"]


def test_two_clients_on_one_maildrop(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "shared")
    first = pop.login()
    second = poplib.POP3("127.0.0.1", pop.port, timeout=10)
    second.user("carol")
    with pytest.raises(poplib.error_proto) as info:
        second.pass_("my password")
    assert info.value.args[0] == b"-ERR [IN-USE] maildrop locked"
    first.dele(1)
    first.quit()
    second.user("carol")
    assert second.pass_("my password") == b"+OK"
    assert second.stat() == (0, 0)
    second.quit()


def test_a_user_name_with_dot_dot_slash_cannot_escape_the_spool(start_relay,
                                                                tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path, "--pop-by-name",
                    accounts="server plain ../escape pw\nserver plain alice secret\n")
    pop.relay.wait_for_log("pop account [../escape] cannot have a pop-by-name maildrop")
    raw = pop.raw()
    raw.ask("USER ../escape")
    assert raw.ask("PASS pw") == "-ERR [AUTH] this user name cannot have a maildrop"
    raw.ask("USER ../../tmp")
    assert raw.ask("PASS pw") == "-ERR [AUTH] authentication failed"
    raw.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        pop.spool.name]  # nothing created beside the spool
    assert [p.name for p in pop.spool.iterdir()] == ["alice"]


def test_a_message_being_forwarded_is_never_served_or_deleted(start_relay,
                                                              tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path)
    send(pop.relay, "busy")
    send(pop.relay, "free")
    client = pop.login()
    assert client.stat()[0] == 2
    spool = Spool(pop.spool, create=False)
    busy = spool.lock(spool.ready()[0])  # as a forwarder does: .busy
    assert busy is not None
    with pytest.raises(poplib.error_proto, match="being forwarded or has gone"):
        client.retr(1)
    client.dele(1)
    client.dele(2)
    with pytest.raises(poplib.error_proto, match="some deleted messages not removed"):
        client.quit()
    assert spool.envelope_path(busy.id, ".busy").exists() and busy.content_path.exists()
    assert spool.ready() == []
    fresh = pop.login()
    assert fresh.stat()[0] == 0  # .busy is not listed
    fresh.quit()
    busy.release()


def test_pop_no_delete(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path, "--pop-no-delete")
    send(pop.relay, "stays")
    client = pop.login()
    assert client.dele(1) == b"+OK"
    assert client.quit() == b"+OK signing off"
    assert len(spool_files(pop.spool)) == 2


# -- pop-by-name and emailrelay-filter-copy -----------------------------------------------------

def filter_copy(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "emailrelay-filter-copy"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=30)


@needs["curl"]
def test_pop_by_name_with_emailrelay_filter_copy(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path, "--pop-by-name",
                    accounts=f"server plain alice secret\nserver md5 carol {CAROL_MD5}\n")
    log = pop.relay.wait_for_log("created pop-by-name sub-directory [carol]")
    assert "created pop-by-name sub-directory [alice]" in log
    send(pop.relay, "for everyone")
    (content,) = pop.relay.contents()
    done = filter_copy(str(content))
    assert done.returncode == 100, done.stdout
    message_id = content.name.removesuffix(".content")
    assert spool_files(pop.spool) == sorted([f"alice/{message_id}.envelope", content.name,
                                             f"carol/{message_id}.envelope"])

    alice = pop.login()
    assert subjects(alice) == ["for everyone"]
    assert alice.uidl(1).split()[2].decode() == content.name
    alice.dele(1)
    alice.quit()
    assert content.exists()  # carol's envelope still needs it

    got = subprocess.run(["curl", "-sS", "-u", "carol:my password",
                          f"pop3://127.0.0.1:{pop.port}/1"], capture_output=True, timeout=30)
    assert got.returncode == 0 and b"Subject: for everyone" in got.stdout
    subprocess.run(["curl", "-sS", "-u", "carol:my password", "-X", "DELE", "-I",
                    f"pop3://127.0.0.1:{pop.port}/1"], check=True, timeout=30)
    assert spool_files(pop.spool) == []
    assert sorted(p.name for p in pop.spool.iterdir()) == ["alice", "carol"]


@pytest.mark.parametrize("filter_spec", ["copy:pop", "emailrelay-filter-copy"])
def test_pop_by_name_with_the_copy_filter_in_the_relay(start_relay, tmp_path: Path,
                                                       filter_spec: str) -> None:
    if filter_spec == "emailrelay-filter-copy":
        filter_spec = str(Path(sys.executable).parent / filter_spec)
    pop = start_pop(start_relay, tmp_path, "--pop-by-name", "--filter", filter_spec,
                    accounts=f"server plain alice secret\nserver md5 carol {CAROL_MD5}\n")
    send(pop.relay, "copied by the relay")
    send(pop.relay, "and another")
    (first, second) = sorted(pop.relay.contents())
    assert spool_files(pop.spool) == sorted(
        [first.name, second.name] + [f"{user}/{c.name.replace('.content', '.envelope')}"
                                     for user in ("alice", "carol") for c in (first, second)])
    for user, password in (("alice", "secret"), ("carol", "my password")):
        client = pop.login(user, password)
        assert subjects(client) == ["copied by the relay", "and another"]
        client.dele(1)
        client.dele(2)
        client.quit()
    assert spool_files(pop.spool) == []


def test_pop_by_name_maildrops_are_separate(start_relay, tmp_path: Path) -> None:
    pop = start_pop(start_relay, tmp_path, "--pop-by-name")
    send(pop.relay, "main spool only")
    alice = pop.login()
    assert alice.stat() == (0, 0)  # the main spool is not alice's maildrop
    carol = pop.login("carol", "my password")  # a different maildrop: no lock conflict
    carol.quit()
    alice.quit()


# -- options and start-up ---------------------------------------------------------------------

@pytest.mark.parametrize(("args", "error"), [
    (["--pop"], "usage error: the --pop option requires --pop-auth"),
    (["--pop-port", "1110"], "usage error: pop options require --pop"),
    (["--pop-by-name"], "usage error: pop options require --pop"),
    (["--pop", "--pop-auth", "x", "--dont-serve"],
     "usage error: the --pop option cannot be used with --as-client or --dont-serve"),
    (["--pop", "--pop-auth", "x", "--as-client", "127.0.0.1:25"],
     "usage error: the --pop option cannot be used with --as-client or --dont-serve"),
    (["--pop", "--pop-auth", "x", "--pop-port", "70000"],
     'invalid value for --pop-port: "70000"'),
])
def test_option_errors(args: list[str], error: str) -> None:
    done = run_emailrelay(*args)
    assert done.returncode == 1
    assert error in done.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("server plain alice\n", "line 1: too few fields"),
    ("# ok\nLOGIN nobody x y\n", "line 2: invalid value in first field: [LOGIN]"),
])
def test_a_malformed_secrets_file_stops_start_up(tmp_path: Path, text: str,
                                                  message: str) -> None:
    auth = tmp_path / "bad.auth"
    auth.write_text(text)
    done = run_emailrelay("--no-daemon", "--log", "--port", str(free_port()), "--interface",
                          "127.0.0.1", "--spool-dir", str(tmp_path / "spool"), "--pop",
                          "--pop-port", str(free_port()), "--pop-auth", str(auth),
                          "--user", "root")
    assert done.returncode == 1
    assert f"emailrelay: error: invalid secrets file \"{auth}\": {message}" in done.stderr


def test_pam_is_refused(tmp_path: Path) -> None:
    done = run_emailrelay("--no-daemon", "--port", str(free_port()), "--interface", "127.0.0.1",
                          "--spool-dir", str(tmp_path), "--pop", "--pop-auth", "pam:")
    assert done.returncode == 1 and "--pop-auth=pam: is not supported" in done.stderr


def test_start_up_warnings_and_the_listening_line(start_relay, tmp_path: Path) -> None:
    auth = tmp_path / "open.auth"
    auth.write_text("NONE server 192.168.1.* keyword\nclient plain a b\n")
    auth.chmod(0o644)
    port = free_port()
    relay = start_relay("--pop", "--pop-port", str(port), "--pop-auth", str(auth))
    log = relay.wait_for_log(f"pop server on 127.0.0.1:{port}")
    assert f"secrets file \"{auth}\" is readable by other users" in log
    assert "line 1: old field order: read as \"server none 192.168.1.* keyword\"" in log
    assert "has no server accounts: nobody can log in to the POP server" in log


def test_pop_only_on_its_own_interface(tmp_path: Path) -> None:
    port = free_port()
    auth = tmp_path / "pop.auth"
    auth.write_text(ACCOUNTS)
    auth.chmod(0o600)
    log_path = tmp_path / "poponly.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "emailrelay", "--no-daemon", "--log", "--user", "root",
             "--spool-dir", str(tmp_path / "spool"), "--no-smtp", "--pop", "--pop-auth",
             str(auth), "--pop-port", str(port), "--interface", "pop=127.0.0.1"],
            stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        client = poplib.POP3("127.0.0.1", port, timeout=10)
        assert client.getwelcome().startswith(b"+OK POP3 server ready <")
        client.quit()
        log = log_path.read_text()
        assert f"pop server on 127.0.0.1:{port}" in log and "smtp server on" not in log
    finally:
        process.terminate()
        process.wait(15)


class FakeWriter:
    """Stands in for a connection from an address this host cannot make up."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.closed = False

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("flags", "refused"), [([], True), (["--remote-clients"], False)])
def test_remote_clients_applies_to_pop(tmp_path: Path, flags: list[str], refused: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    auth = tmp_path / "pop.auth"
    auth.write_text(ACCOUNTS)
    auth.chmod(0o600)
    settings = parse(["--spool-dir", str(tmp_path / "spool"), "--pop", "--pop-auth", str(auth),
                      *flags]).process
    served: list[tuple[str, str]] = []

    class RecordingSession:
        def __init__(self, context: object, reader: object, writer: object,
                     peer: tuple[str, str], tls: object = None) -> None:
            served.append(peer)

        async def run(self) -> None:
            pass

    monkeypatch.setattr(instance_module, "PopSession", RecordingSession)
    committer = GroupCommitter()
    try:
        inst = instance_module.Instance(settings, committer)
        writer = FakeWriter(("203.0.113.9", 4321))
        with captured_log() as lines:
            asyncio.run(inst._on_connection("pop", None, writer))  # type: ignore[arg-type]
    finally:
        committer.close()
    assert writer.closed is refused and served == ([] if refused else [("203.0.113.9", "4321")])
    warning = ("warning: configured to reject non-local pop connection: 203.0.113.9 is not a "
               "local address (use --remote-clients)")
    assert (warning in lines) is refused


def test_retr_of_a_100_mb_message_streams_from_disk(start_relay, tmp_path: Path) -> None:
    """RETR reads the content file in pieces: serving 100 MB adds little to the relay's
    peak memory, and every byte arrives (counted on a raw socket, dot-unstuffed)."""
    pop = start_pop(start_relay, tmp_path)
    spool = Spool(pop.relay.spool)
    line = b".x" + b"y" * 996 + b"\r\n"  # each line needs a stuffed dot on the wire
    message = spool.new_message(Envelope(from_="a@example.com", to_remote=["b@example.com"]))
    message.write(b"Subject: big\r\n\r\n")
    for _ in range(100):
        message.write(line * 1000)
    message.commit_sync()
    expected = 16 + 100 * 1000 * len(line)
    before = peak_rss_kb(pop.relay.process.pid)
    with socket.create_connection(("127.0.0.1", pop.port), timeout=60) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
        for _ in range(3):
            assert reader.readline().startswith(b"+OK")
        received = 0
        while (got := reader.readline()) != b".\r\n":
            received += len(got) - (1 if got.startswith(b"..") else 0)
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"+OK")
    assert received == expected
    growth_kb = peak_rss_kb(pop.relay.process.pid) - before
    assert growth_kb < 8 * 1024, f"peak RSS grew by {growth_kb} KB"
