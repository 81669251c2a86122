"""OpenWrt: the UCI reader, the section-to-command-line mapping, ``emailrelay --uci``."""

from __future__ import annotations

import base64
import contextlib
import poplib
import shlex
import signal
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emailrelay.options.parser import UsageError
from emailrelay.options.parser import parse as parse_command_line
from emailrelay.options.table import BY_NAME, UCI_OPTIONS
from emailrelay.uci import mapping
from emailrelay.uci.instances import instances
from emailrelay.uci.parser import UciError, parse
from tests.support.certs import Pki
from tests.support.fakesmtp import FakeSmtpServer, Script
from tests.support.helpers import script
from tests.support.relay import ROOT, emailrelay_command, free_port, run_emailrelay

DEFAULT_CONFIG = ROOT / "packaging/openwrt/files/emailrelay.config"


def command_lines(text: str) -> dict[str, list[str] | None]:
    """Section label -> its arguments (None when disabled)."""
    return {c.section.label: (c.arguments if c.enabled else None)
            for c in mapping.commands(parse(text, "test.conf"))}


def args(line: str) -> list[str]:
    return shlex.split(line)


def pending(*names: str) -> str | None:
    features = {BY_NAME[n].pending for n in names if BY_NAME[n].pending}
    return f"needs {', '.join(sorted(features))}" if features else None


# -- the UCI syntax ---------------------------------------------------------------------------

def test_sections_options_lists_and_comments() -> None:
    uci = parse("""
package emailrelay
# a comment
config emailrelay 'server'   # trailing comment
	option enabled 1
	option mode "server"
	list filter '/bin/a'
	list filter /bin/b#not part of the value
config other
	option x y
config emailrelay
	option mode cmdline
""", "f")
    assert uci.package == "emailrelay"
    server, other, anonymous = uci.sections
    assert (server.type, server.name, server.label, server.line) == (
        "emailrelay", "server", "server", 4)
    assert server.options["enabled"].values == ["1"]
    assert server.options["filter"].values == ["/bin/a", "/bin/b"]
    assert server.options["filter"].is_list and not server.options["mode"].is_list
    assert other.label == "@other[0]" and anonymous.label == "@emailrelay[1]"
    assert [s.label for s in uci.of_type("emailrelay")] == ["server", "@emailrelay[1]"]


def test_quoting_escapes_and_continuations() -> None:
    section = parse(r"""config t 's'
	option single 'a "b" \n c'
	option double "x \"y\" \\ \$z"
	option bare a\ b\#c
	option joined 'one'"two"three
	option multi 'first
second'
	option continued "long \
value"
	o short 1; l items 'a;b' ; l items c
""").sections[0]
    values = {k: v.values if v.is_list else v.values[0] for k, v in section.options.items()}
    assert values == {
        "single": 'a "b" \\n c',
        "double": 'x "y" \\ $z',
        "bare": "a b#c",
        "joined": "onetwothree",
        "multi": "first\nsecond",
        "continued": "long value",
        "short": "1",
        "items": ["a;b", "c"],
    }
    assert section.options["short"].line == 10


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))),
                min_size=1, max_size=4))
def test_values_written_as_uci_exports_them_read_back_unchanged(values: list[str]) -> None:
    # uci export quotes each value in '...' and writes a quote inside as '\''.
    quoted = ["'" + v.replace("'", "'\\''") + "'" for v in values]
    text = "config t 's'\n" + "".join(f"\tlist items {q}\n" for q in quoted)
    assert parse(text).sections[0].options["items"].values == values


def test_repeated_sections_merge_and_options_override() -> None:
    section, = parse("""config t 'a'
	option x 1
	option y 1
config t 'a'
	option x 2
	option y ''
	list x 3
""").sections
    assert section.options["x"].values == ["2", "3"] and section.options["x"].is_list
    assert "y" not in section.options  # an empty value removes the option


@pytest.mark.parametrize(("text", "error"), [
    ("option x 1\n", "f:1: option before the first config section"),
    ("config t\nfoo bar\n", "f:2: invalid command \"foo\""),
    ("config t\n\toption x 'open\n", "f:2: unterminated ' quote"),
    ("config t\n\toption x \"open\n\n", "f:2: unterminated \" quote"),
    ("config t\n\toption x a b\n", "f:2: too many arguments (\"b\")"),
    ("config t\n\toption bad-name 1\n", "f:2: invalid character in the option name"),
    ("config t 'bad name'\n", "f:1: invalid character in the section name"),
    ("config\n", "f:1: config without a type"),
    ("config t\n\toption\n", "f:2: option without a name"),
    ("config a 's'\nconfig b 's'\n", "f:2: section \"s\" is already of type \"a\""),
])
def test_syntax_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(UciError) as caught:
        parse(text, "f")
    assert str(caught.value).startswith(error)


# -- the mapping: exact command lines ---------------------------------------------------------

def test_the_option_table_covers_openwrts_table() -> None:
    openwrt = {"enabled", "mode", "smarthost", "port", "remote_clients", "dnsbl",
               "address_verifier", "domain", "anonymous", "server_tls", "server_tls_required",
               "server_tls_key", "server_tls_certificate", "server_tls_verify", "server_auth",
               "filter", "client_tls", "client_tls_required", "client_tls_key",
               "client_tls_certificate", "client_tls_verify", "client_auth",
               "smtp_client_interface", "client_filter", "pop", "pop_port", "pop_auth",
               "pop_by_name", "pop_server_interface", "spool_dir", "delivery_dir",
               "extra_cmdline", "smtp_server_interface"}
    assert {u.name for u in UCI_OPTIONS} == openwrt
    for u in UCI_OPTIONS:
        assert u.option is None or u.option in BY_NAME, u.name


def test_the_default_file() -> None:
    text = DEFAULT_CONFIG.read_text()
    assert command_lines(text) == {"server": None, "proxy": None, "cmdline": None}
    enabled = text.replace("option enabled '0'", "option enabled '1'")
    assert command_lines(enabled) == {
        "server": args("--no-daemon --as-server --port 25 --forward-to-some"),
        "proxy": args("--no-daemon --as-proxy 192.0.2.1:25 --port 25 --forward-to-some"),
        "cmdline": args("--no-daemon --as-server --port 2525 --interface 127.0.0.1 "
                        "--spool-dir /var/spool/emailrelay --forward-to-some"),
    }
    # The commented-out examples are valid too.
    examples = "\n".join(line.replace("#\toption", "\toption").replace("#\tlist", "\tlist")
                         for line in enabled.splitlines())
    lines = command_lines(examples)
    assert lines["server"] == args(
        "--no-daemon --as-server --port 25 --server-tls "
        "--server-tls-certificate /etc/ssl/emailrelay/privkey.pem "
        "--server-tls-certificate /etc/ssl/emailrelay/fullchain.pem "
        "--server-auth /etc/emailrelay.auth --spool-dir /srv/emailrelay/spool "
        "--forward-to-some")
    assert lines["proxy"] == args(
        "--no-daemon --interface smtp=192.168.1.1 --as-proxy 192.0.2.1:25 --port 25 "
        "--server-tls --server-tls-certificate /etc/ssl/emailrelay/privkey.pem "
        "--server-tls-certificate /etc/ssl/emailrelay/fullchain.pem "
        "--server-auth /etc/emailrelay.auth --client-tls --client-auth /etc/emailrelay.auth "
        "--forward-to-some")


EVERY_OPTION = """
config emailrelay 'all'
	option enabled 'yes'
	option mode 'proxy'
	option smarthost 'smarthost.example.com:587'
	option port '2525'
	option remote_clients 'on'
	list dnsbl 'zen.example.org,1'
	list dnsbl 'bl.example.net'
	option address_verifier 'account:'
	option domain 'mail.example.com'
	option anonymous 'true'
	option server_tls '1'
	option server_tls_required '1'
	option server_tls_key '/etc/ssl/key.pem'
	option server_tls_certificate '/etc/ssl/fullchain.pem'
	option server_tls_verify '/etc/ssl/ca.pem'
	option server_auth '/etc/emailrelay.auth'
	list filter '/usr/bin/filter one'
	list filter 'spam:127.0.0.1:783'
	option client_tls 'enabled'
	option client_tls_required '1'
	option client_tls_key '/etc/ssl/client-key.pem'
	option client_tls_certificate '/etc/ssl/client-chain.pem'
	option client_tls_verify '<default>'
	option client_auth '/etc/client.auth'
	list smtp_client_interface '192.0.2.10'
	list client_filter 'copy:'
	option pop '1'
	option pop_port '1110'
	option pop_auth '/etc/pop.auth'
	option pop_by_name '1'
	list pop_server_interface '127.0.0.1'
	list smtp_server_interface '127.0.0.1'
	list smtp_server_interface 'eth0'
	option spool_dir '/srv/spool'
	option delivery_dir '/srv/in'
	option extra_cmdline '--log-time --domain-name-check=no'
	option extra_cmdline "--log-time --size 1000000 --filter-timeout '30'"
"""

EVERY_OPTION_LINE = (
    "--no-daemon --dnsbl zen.example.org,1 --dnsbl bl.example.net "
    "--filter '/usr/bin/filter one' --filter spam:127.0.0.1:783 "
    "--interface smtp=127.0.0.1 --interface smtp=eth0 --client-filter copy: "
    "--interface pop=127.0.0.1 --as-proxy smarthost.example.com:587 --port 2525 "
    "--remote-clients --server-tls --server-tls-required "
    "--server-tls-certificate /etc/ssl/key.pem --server-tls-certificate /etc/ssl/fullchain.pem "
    "--server-tls-verify /etc/ssl/ca.pem --server-auth /etc/emailrelay.auth --client-tls "
    "--client-tls-required --client-tls-certificate /etc/ssl/client-key.pem "
    "--client-tls-certificate /etc/ssl/client-chain.pem --client-tls-verify '<default>' "
    "--client-auth /etc/client.auth --client-interface 192.0.2.10 "
    "--address-verifier account: --domain mail.example.com --anonymous --pop "
    "--pop-port 1110 --pop-auth /etc/pop.auth --pop-by-name --spool-dir /srv/spool "
    "--delivery-dir /srv/in --log-time --size 1000000 --filter-timeout 30 --forward-to-some")


def test_a_file_using_every_option(tmp_path: Path) -> None:
    assert command_lines(EVERY_OPTION) == {"all": args(EVERY_OPTION_LINE)}
    conf = tmp_path / "emailrelay"
    conf.write_text(EVERY_OPTION)
    result = run_emailrelay("--uci", str(conf), "--print-command-line")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"# all\nemailrelay {EVERY_OPTION_LINE}\n"


@pytest.mark.parametrize(("section", "line"), [
    # The older file form (the default file's comments) and the wiki's key,chain advice.
    ("option server_tls '/etc/ssl/both.pem'",
     "--server-tls --server-tls-certificate /etc/ssl/both.pem"),
    ("option server_tls '/etc/ssl/key.pem,/etc/ssl/fullchain.pem'",
     "--server-tls --server-tls-certificate /etc/ssl/key.pem "
     "--server-tls-certificate /etc/ssl/fullchain.pem"),
    # A full chain with the key in it.
    ("option server_tls 1\n\toption server_tls_certificate /etc/ssl/both.pem",
     "--server-tls --server-tls-certificate /etc/ssl/both.pem"),
    # Certificates without server_tls are passed on, as the init script does.
    ("option server_tls 0\n\toption server_tls_certificate /etc/ssl/both.pem",
     "--server-tls-certificate /etc/ssl/both.pem"),
])
def test_server_tls_forms(section: str, line: str) -> None:
    text = f"config emailrelay 's'\n\toption mode server\n\t{section}\n"
    assert command_lines(text) == {"s": args(f"--no-daemon --as-server {line} "
                                             "--forward-to-some")}


def test_lists_options_as_lists_and_one_item_lists() -> None:
    text = """config emailrelay 'c'
	option mode client
	option smarthost 192.0.2.1:25
	option dnsbl 'only.example.org'
	list filter ''
	list smtp_client_interface '192.0.2.7'
	option enabled ''
"""
    assert command_lines(text) == {"c": args(
        "--no-daemon --dnsbl only.example.org --as-client 192.0.2.1:25 "
        "--client-interface 192.0.2.7 --forward-to-some")}


def test_extra_cmdline_is_split_like_shell_words() -> None:
    text = """config emailrelay 'x'
	option mode cmdline
	option extra_cmdline "--as-server --domain 'my host' --filter=\\"/bin/a b\\" -v"
"""
    assert command_lines(text) == {"x": [
        "--no-daemon", "--as-server", "--domain", "my host", "--filter=/bin/a b", "-v",
        "--forward-to-some"]}


@pytest.mark.parametrize(("body", "error"), [
    ("option mode server\n\toption prot 25",
     "test.conf:3: section \"s\": option \"prot\": unknown option"),
    ("option mode server\n\toption remote_clients maybe",
     "test.conf:3: section \"s\": option \"remote_clients\": \"maybe\" is not a boolean"),
    ("option mode server\n\toption port http",
     "test.conf:3: section \"s\": option \"port\": invalid value \"http\": not a number"),
    ("option mode server\n\toption pop_port 70000",
     "option \"pop_port\": invalid value \"70000\": not between 0 and 65535"),
    ("option mode server\n\tlist port 25\n\tlist port 26",
     "test.conf:4: section \"s\": option \"port\": takes one value, not a list of 2"),
    ("option mode relay", "section \"s\": option \"mode\": \"relay\" is not one of server, "
     "proxy, client, cmdline"),
    ("option port 25", "test.conf:1: section \"s\": no mode: set option mode"),
    ("option mode proxy", "section \"s\": mode proxy needs option smarthost"),
    ("option mode server\n\toption smarthost 192.0.2.1:25",
     "option \"smarthost\": is used only in modes proxy and client, not server"),
    ("option mode server\n\toption server_tls 1",
     "option \"server_tls\": needs server_tls_certificate"),
    ("option mode server\n\toption server_tls_key /k.pem",
     "option \"server_tls_key\": needs server_tls_certificate too"),
    ("option mode server\n\toption client_tls_key /k.pem",
     "option \"client_tls_key\": needs client_tls_certificate too"),
    ("option mode server\n\toption server_tls /a.pem\n\toption server_tls_key /k.pem",
     "option \"server_tls\": gives the certificate file itself"),
    ("option mode server\n\toption server_tls /a,/b,/c",
     "option \"server_tls\": \"/a,/b,/c\" is neither a boolean nor a certificate file"),
    ("option mode server\n\toption server_tls yes/no",
     "option \"server_tls\": \"yes/no\" is not a boolean"),
    ("option mode cmdline\n\toption extra_cmdline \"--domain 'x\"",
     "option \"extra_cmdline\": cannot split into words"),
])
def test_mapping_errors_name_the_section_and_option(body: str, error: str) -> None:
    with pytest.raises(UsageError) as caught:
        mapping.commands(parse(f"config emailrelay 's'\n\t{body}\n", "test.conf"))
    assert error in str(caught.value)


def test_disabled_sections_are_checked_but_not_built() -> None:
    assert command_lines("config emailrelay 'off'\n\toption enabled 0\n") == {"off": None}
    with pytest.raises(UsageError, match="unknown option"):
        command_lines("config emailrelay 'off'\n\toption enabled 0\n\toption typo 1\n")


@pytest.mark.parametrize(("text", "argv", "error"), [
    ("config emailrelay 's'\n\toption mode cmdline\n\toption extra_cmdline '--bogus'\n",
     [], 'error: {f}: section "s": invalid option: "--bogus"'),
    ("config emailrelay 's'\n\toption mode cmdline\n\toption extra_cmdline '--port 1 -p 2'\n",
     [], 'error: {f}: section "s": duplicate use of "--port"'),
    ("config emailrelay 's'\n\toption mode server\n\toption typo 1\n",
     [], 'usage error: {f}:3: section "s": option "typo": unknown option'),
    ("config emailrelay 's'\n\toption mode server\n\toption port '1'\n config\n",
     [], "error: {f}:4: config without a type"),
])
def test_bad_files_on_the_command_line(tmp_path: Path, text: str, argv: list[str],
                                       error: str) -> None:
    conf = tmp_path / "emailrelay"
    conf.write_text(text)
    for extra in ([], ["--print-command-line"]):
        result = run_emailrelay("--uci", str(conf), *extra, *argv)
        assert result.returncode == 1
        assert result.stderr.startswith(f"emailrelay: {error.format(f=conf)}"), result.stderr


@pytest.mark.parametrize(("argv", "error"), [
    (["--print-command-line"], "usage error: --print-command-line needs --uci <file>"),
    (["--uci", "{f}", "--port", "25"], "usage error: --port cannot be used with --uci"),
    (["--uci", "{f}", "{other}"], "usage error: a configuration file (\"{other}\") "
     "cannot be used with --uci"),
    (["--uci", "{f}", "--x-spool-dir", "/tmp"], "usage error: named instances"),
    (["--uci", "{missing}"], "error: cannot read UCI file \"{missing}\": No such file"),
])
def test_command_line_errors_with_uci(tmp_path: Path, argv: list[str], error: str) -> None:
    conf = tmp_path / "emailrelay"
    conf.write_text(DEFAULT_CONFIG.read_text().replace("enabled '0'", "enabled '1'"))
    names = {"f": conf, "missing": tmp_path / "missing", "other": tmp_path / "other.conf"}
    names["other"].write_text("log\n")
    result = run_emailrelay(*(a.format(**names) for a in argv))
    assert result.returncode == 1
    assert result.stderr.startswith(f"emailrelay: {error.format(**names)}"), result.stderr


def test_nothing_enabled_is_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "emailrelay"
    conf.write_text(DEFAULT_CONFIG.read_text())
    result = run_emailrelay("--uci", str(conf))
    assert result.returncode == 1
    assert f"no enabled \"emailrelay\" section in {conf}" in result.stderr
    result = run_emailrelay("--uci", str(conf), "--print-command-line")
    assert (result.returncode, result.stdout) == (
        0, "# server (disabled)\n# proxy (disabled)\n# cmdline (disabled)\n")


def test_sections_become_named_instances_of_one_process(tmp_path: Path) -> None:
    conf = tmp_path / "emailrelay"
    conf.write_text("""config emailrelay 'first'
	option mode cmdline
	option extra_cmdline '--port 2601 --user nobody --pid-file /run/a.pid'
config emailrelay
	option mode server
	option port 2602
	option extra_cmdline '--verbose --user root --pid-file /run/b.pid'
config emailrelay 'off'
	option enabled 0
""")
    cl = instances(parse_command_line(["--uci", str(conf), "--log-file", "/tmp/x.log",
                                       "--pid-file", "/run/c.pid"]))
    first, second = cl.instances
    assert (first.name, second.name) == ("first", "@emailrelay[1]")
    assert (first.value("port"), second.value("port")) == ("2601", "2602")
    # Process-wide options: the first section that gives one decides, then the command line.
    assert first.value("user") == "nobody"
    assert first.flag("verbose") and first.flag("log") and first.flag("close-stderr")
    assert first.values("pid-file") == ["/run/a.pid", "/run/c.pid"]
    assert first.value("log-file") == "/tmp/x.log"
    assert not any(BY_NAME[n].process_wide for n in second.given)
    assert second.flag("forward-to-some") and "uci" not in first.given


# -- running the sections -----------------------------------------------------------------------

@contextlib.contextmanager
def running(conf: Path, tmp_path: Path, *ports: int) -> Iterator[Path]:
    """``emailrelay --uci conf`` until the block ends; yields its log file."""
    log = tmp_path / "uci.log"
    process = subprocess.Popen([*emailrelay_command(), "--uci", str(conf), "--user", "root",
                                "--no-syslog", "--log-file", str(log)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 15
        for port in ports:
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"exited {process.returncode}: "
                                         f"{process.stdout.read() if process.stdout else ''}")
                try:
                    smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text() if log.exists() else ""


def send(port: int, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("sender@example.com", [to], f"Subject: to {to}\r\n\r\nhello\r\n")


@pytest.mark.skipif(bool(pending("forward-to-some")), reason=pending("forward-to-some") or "")
def test_default_file_sections_start_and_answer_smtp(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    text = (DEFAULT_CONFIG.read_text().replace("enabled '0'", "enabled '1'")
            .replace("option port '25'", "list smtp_server_interface '127.0.0.1'\n\t"
                     f"option spool_dir '{tmp_path}/server'\n\toption port '{ports[0]}'", 1)
            .replace("--port 2525", f"--port {ports[1]}")
            .replace("/var/spool/emailrelay", str(tmp_path / "cmdline")))
    # The proxy section needs forwarding and port 25: it is run in the test below.
    text = text.replace("config emailrelay 'proxy'\n\toption enabled '1'",
                        "config emailrelay 'proxy'\n\toption enabled '0'")
    conf = tmp_path / "emailrelay"
    conf.write_text(text)
    with running(conf, tmp_path, *ports) as log:
        send(ports[0], "one@example.com")
        send(ports[1], "two@example.com")
        text = log.read_text()
        assert f"[server] smtp server on 127.0.0.1:{ports[0]}" in text
        assert f"[cmdline] smtp server on 127.0.0.1:{ports[1]}" in text
    for name, rcpt in (("server", "one@example.com"), ("cmdline", "two@example.com")):
        [envelope] = (tmp_path / name).glob("*.envelope")
        assert f"X-MailRelay-To-Remote: {rcpt}" in envelope.read_text()


@pytest.mark.skipif(bool(pending("forward-to-some", "as-proxy", "forward-to",
                                 "forward-on-disconnect")),
                    reason=pending("forward-to-some", "forward-to", "forward-on-disconnect")
                    or "")
def test_a_proxy_section_forwards(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    received = []

    class Capture(Sink):
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    smarthost, port = free_port(), free_port()
    capture = Controller(Capture(), hostname="127.0.0.1", port=smarthost)
    capture.start()
    conf = tmp_path / "emailrelay"
    conf.write_text(f"""config emailrelay 'proxy'
	option mode 'proxy'
	option smarthost '127.0.0.1:{smarthost}'
	option port '{port}'
	list smtp_server_interface '127.0.0.1'
	option spool_dir '{tmp_path}/proxy'
""")
    try:
        with running(conf, tmp_path, port):
            send(port, "far@example.com")
            deadline = time.monotonic() + 15
            while not received and time.monotonic() < deadline:
                time.sleep(0.1)
        assert [e.rcpt_tos for e in received] == [["far@example.com"]]
    finally:
        capture.stop()


def test_a_trimmed_every_option_file_runs_and_stores_a_message(tmp_path: Path) -> None:
    """EVERY_OPTION with real files and local addresses: the relay starts from it, takes a
    message over TLS with a client certificate and AUTH, runs the filter and stores it; on
    forwarding the client filter copy: moves it into the mailbox that POP serves by name."""
    pki = Pki(tmp_path)
    server_key, server_chain = pki.key_and_chain()
    client_key, client_chain = pki.key_and_chain(pki.issue("client.example"))
    client_leaf = pki.issue("client.example")
    server_auth, client_auth, pop_auth = (tmp_path / n for n in ("server.auth", "client.auth",
                                                                "pop.auth"))
    server_auth.write_text("server plain alice secret\n")
    client_auth.write_text("client plain relay relaysecret\n")
    pop_auth.write_text("server plain alice popsecret\n")
    for secrets in (server_auth, client_auth, pop_auth):
        secrets.chmod(0o600)
    filtered = tmp_path / "filtered"
    filter_script = script(tmp_path, "filter one", f'echo "$1" >> "{filtered}"\nexit 0\n')
    spool = tmp_path / "spool"
    (spool / "alice").mkdir(parents=True)  # the mailbox copy: fills and POP serves
    port, pop_port = free_port(), free_port()
    text = EVERY_OPTION
    for old, new in [
        ("'smarthost.example.com:587'", "'127.0.0.1:{smarthost}'"),
        ("'2525'", f"'{port}'"),
        # The list items are joined with commas into one configuration, so the fields
        # after the lists go on the last item (and no DNS query leaves the machine).
        ("'zen.example.org,1'", "'zen.example.org'"),
        ("'bl.example.net'", "'bl.example.net,1,1000,127.0.0.1:9'"),
        ("'account:'", "'account:check'"),  # the recipient is no local account
        ("'/etc/ssl/key.pem'", f"'{server_key}'"),
        ("'/etc/ssl/fullchain.pem'", f"'{server_chain}'"),
        ("'/etc/ssl/ca.pem'", f"'{pki.ca_file}'"),
        ("'/etc/emailrelay.auth'", f"'{server_auth}'"),
        ("'/usr/bin/filter one'", f"'{filter_script}'"),
        ("\tlist filter 'spam:127.0.0.1:783'\n", ""),  # no spamd here
        ("'/etc/ssl/client-key.pem'", f"'{client_key}'"),
        ("'/etc/ssl/client-chain.pem'", f"'{client_chain}'"),
        ("'<default>'", f"'{pki.ca_file}'"),
        ("'/etc/client.auth'", f"'{client_auth}'"),
        ("'192.0.2.10'", "'127.0.0.1'"),
        ("'1110'", f"'{pop_port}'"),
        ("'/etc/pop.auth'", f"'{pop_auth}'"),
        ("\tlist smtp_server_interface 'eth0'\n", ""),
        ("'/srv/spool'", f"'{spool}'"),
        ("'/srv/in'", f"'{tmp_path / 'in'}'"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    smarthost_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.issue().configure_cert(smarthost_tls)
    with FakeSmtpServer(Script(tls=smarthost_tls, auth=True)) as smarthost:
        conf = tmp_path / "emailrelay"
        conf.write_text(text.replace("{smarthost}", str(smarthost.port)))
        with running(conf, tmp_path, port) as log:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo("client.example")
                with pytest.raises(smtplib.SMTPNotSupportedError):
                    smtp.login("alice", "secret")  # no AUTH before TLS: tls required
                smtp.starttls(context=pki.client_context(client_leaf))
                smtp.login("alice", "secret")
                smtp.sendmail("sender@example.com", ["alice@example.net"],
                              "Subject: every option\r\n\r\nhello\r\n")
            deadline = time.monotonic() + 15
            while not list((spool / "alice").glob("*.envelope")):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            pop = poplib.POP3("127.0.0.1", pop_port, timeout=10)
            pop.stls(context=pki.client_context(client_leaf))  # required here too
            pop.user("alice")
            pop.pass_("popsecret")
            assert pop.stat()[0] == 1
            content = b"\r\n".join(pop.retr(1)[1])
            pop.quit()
            logged = log.read_text()
        # Forwarding went over TLS with client_auth's account before copy: took the
        # message, so the smarthost got nothing.
        assert smarthost.messages == []
        assert smarthost.commands == [
            "EHLO mail.example.com", "STARTTLS", "EHLO mail.example.com",
            "AUTH PLAIN " + base64.b64encode(b"\0relay\0relaysecret").decode(), "QUIT"]
    assert content == b"Subject: every option\r\n\r\nhello"  # anonymous: no Received
    [envelope] = (spool / "alice").glob("*.envelope")
    text = envelope.read_text()
    assert "X-MailRelay-Authentication: alice" in text
    assert "X-MailRelay-To-Remote: alice@example.net" in text
    assert "X-MailRelay-ClientCertificate: -----BEGIN CERTIFICATE-----" in text
    assert filtered.read_text().strip().endswith(".content")
    assert f"[all] smtp server on 127.0.0.1:{port}" in logged
    assert f"[all] pop server on 127.0.0.1:{pop_port}" in logged
    assert "smtp message stored: " in logged


def test_a_pop_section_answers_pop(tmp_path: Path) -> None:
    smtp_port, pop_port = free_port(), free_port()
    secrets = tmp_path / "pop.auth"
    secrets.write_text("server plain alice secret\n")
    conf = tmp_path / "emailrelay"
    conf.write_text(f"""config emailrelay 'box'
	option mode 'server'
	option port '{smtp_port}'
	list smtp_server_interface '127.0.0.1'
	option pop '1'
	option pop_port '{pop_port}'
	option pop_auth '{secrets}'
	list pop_server_interface '127.0.0.1'
	option spool_dir '{tmp_path}/box'
""")
    with running(conf, tmp_path, smtp_port):
        send(smtp_port, "alice@example.com")
        pop = poplib.POP3("127.0.0.1", pop_port, timeout=10)
        pop.user("alice")
        pop.pass_("secret")
        assert pop.stat()[0] == 1
        pop.quit()


def test_server_tls_with_a_key_and_a_full_chain(tmp_path: Path) -> None:
    # The case OpenWrt's package got wrong: the key and the full chain in two files.
    import trustme

    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("localhost", "127.0.0.1")
    key, chain = tmp_path / "privkey.pem", tmp_path / "fullchain.pem"
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)  # a key that other users can read is refused
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    port = free_port()
    conf = tmp_path / "emailrelay"
    conf.write_text(f"""config emailrelay 'tls'
	option mode 'server'
	option port '{port}'
	list smtp_server_interface '127.0.0.1'
	option server_tls '1'
	option server_tls_key '{key}'
	option server_tls_certificate '{chain}'
	option spool_dir '{tmp_path}/tls'
""")
    context = ssl.create_default_context()
    root.configure_trust(context)  # only the root: the server must send the intermediate
    with running(conf, tmp_path, port), smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=context)
        assert smtp.sock.version() is not None
        assert smtp.noop()[0] == 250


@pytest.mark.timeout(10)
@pytest.mark.parametrize("space", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u3000"])
def test_a_character_only_python_calls_space_ends_in_an_error_not_a_hang(space: str) -> None:
    # Found by fuzzing: "\x0c\x1c" made the parser loop for ever (one side of it skipped
    # only ASCII blanks, the other stopped at anything str.isspace() knows).
    with pytest.raises(UciError, match="invalid command"):
        parse(f"\x0c{space}\n", "x")
    assert parse(f"config emailrelay main\n\toption port 25{space}\n", "x").sections[0]
