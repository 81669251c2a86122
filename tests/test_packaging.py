"""The service files: OpenWrt's init script, systemd units with socket activation, Docker."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

from emailrelay.options.parser import parse
from emailrelay.options.validate import validate
from tests.support.capture import CaptureServer
from tests.support.relay import ROOT, emailrelay_command, free_port

OPENWRT = ROOT / "packaging/openwrt"
SYSTEMD = ROOT / "packaging/systemd"
DOCKERFILE = ROOT / "packaging/docker/Dockerfile"


def unit_exec_start() -> list[str]:
    """The arguments emailrelay.service gives the relay (without the program)."""
    text = (SYSTEMD / "emailrelay.service").read_text()
    line = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
    assert line is not None
    argv = shlex.split(line.group(1))
    assert argv[0] == "/usr/bin/emailrelay"
    return argv[1:]


def send_and_wait_for_spool(port: int, spool: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.05)
    with smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], "Subject: activated\r\n\r\nhi\r\n")
    [envelope] = spool.glob("*.envelope")
    assert "X-MailRelay-To-Remote: b@example.com" in envelope.read_text()


def stop(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    out, _ = process.communicate(timeout=15)
    return out.decode(errors="replace")


# -- OpenWrt --------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck (apt)")
def test_init_script_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(OPENWRT / "files/emailrelay.init")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# procd and OpenWrt's config functions, as far as the init script uses them.
STUBS = r"""
config_load() { [ "$1" = emailrelay ] || exit 9; }
config_foreach() { fn=$1; type=$2; for s in $SECTIONS; do "$fn" "$s"; done; }
config_get_bool() {
    eval "value=\${ENABLED_$2-}"
    case "$value" in
        1|on|true|yes|enabled) value=1 ;;
        0|off|false|no|disabled) value=0 ;;
        *) value=$4 ;;
    esac
    eval "$1=\$value"
}
procd_open_instance() { echo open; }
procd_set_param() { echo "$*"; }
procd_close_instance() { echo close; }
procd_add_reload_trigger() { echo "trigger $*"; }
"""


@pytest.mark.parametrize(("sections", "starts"), [
    ("SECTIONS='server proxy' ENABLED_server=0 ENABLED_proxy=0", False),
    ("SECTIONS='server proxy' ENABLED_server=0 ENABLED_proxy=1", True),
    ("SECTIONS='cmdline'", True),  # no "enabled": enabled, as OpenWrt's own script has it
    ("SECTIONS=''", False),
])
def test_init_script_starts_one_process_when_a_section_is_enabled(sections: str,
                                                                  starts: bool) -> None:
    script = f"{STUBS}\n{sections}\n. {OPENWRT / 'files/emailrelay.init'}\nstart_service\n" \
             "service_triggers\n"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    instance = ("open\ncommand /usr/bin/emailrelay --uci /etc/config/emailrelay --no-daemon\n"
                "file /etc/config/emailrelay /etc/emailrelay.auth\nrespawn\nstdout 1\n"
                "stderr 1\nclose\n")
    assert result.stdout == (instance if starts else "") + "trigger emailrelay\n"


def test_openwrt_package_installs_the_files_it_ships() -> None:
    makefile = (OPENWRT / "Makefile").read_text()
    shipped = re.findall(r"\./files/(\S+)", makefile)
    assert sorted(shipped) == ["emailrelay.auth", "emailrelay.config", "emailrelay.init"]
    for name in shipped:
        assert (OPENWRT / "files" / name).is_file()
    assert "/etc/config/emailrelay\n/etc/emailrelay.auth\n" in makefile  # conffiles
    assert re.search(r"^PKG_VERSION:=(\S+)$", makefile, re.MULTILINE).group(1) == (
        __import__("emailrelay").__version__)


# pyproject.toml's dependencies: the OpenWrt package each needs, or None for those the
# relay loads only when an option asks for them (the Makefile says which).
OPENWRT_PACKAGES = {"psutil": "python3-psutil", "dnspython": "python3-dns",
                    "python-socks": None, "httpx": None, "prometheus-client": None, "h11": None}
OPTIONAL_MODULES = ("python_socks", "httpx", "prometheus_client", "h11")


def test_openwrt_package_depends_on_what_every_start_imports() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        listed = tomllib.load(f)["project"]["dependencies"]
    names = {re.split(r"[<>=\[]", requirement)[0] for requirement in listed}
    assert names == set(OPENWRT_PACKAGES)
    depends = re.search(r"DEPENDS:=(.*?)\n\s*CONFLICTS", (OPENWRT / "Makefile").read_text(),
                        re.DOTALL).group(1)
    for name, package in OPENWRT_PACKAGES.items():
        if package is not None:
            assert f"+{package}" in depends, name
        else:
            assert name in (OPENWRT / "Makefile").read_text(), f"{name} not named as optional"


def test_the_relay_stores_and_forwards_without_the_optional_modules(tmp_path: Path) -> None:
    """With the optional modules made unimportable, a relay stores a message and an
    --as-client run forwards it (to a capturing server)."""
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in OPTIONAL_MODULES)
    port = free_port()
    spool = tmp_path / "spool"
    script = (f"import sys; {block}; from emailrelay.cli.main import main; "
              f"sys.exit(main(sys.argv[1:]))")
    relay = subprocess.Popen([sys.executable, "-c", script, "--no-daemon", "--user", "root",
                              "--interface", "127.0.0.1", "--port", str(port),
                              "--spool-dir", str(spool)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
                break
            except OSError:
                assert relay.poll() is None and time.monotonic() < deadline, (
                    relay.stderr.read() if relay.poll() is not None else "no listener")
                time.sleep(0.05)
    finally:
        relay.terminate()
        relay.wait(10)
    with CaptureServer() as far:
        done = subprocess.run([sys.executable, "-c", script, "--user", "root", "--as-client",
                               f"127.0.0.1:{far.port}", "--spool-dir", str(spool)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert len(far.messages) == 1


def test_default_auth_file_is_all_comments_in_the_2_6_format() -> None:
    lines = (OPENWRT / "files/emailrelay.auth").read_text().splitlines()
    assert all(line.startswith("#") for line in lines)
    examples = [line[1:].split() for line in lines if re.match(r"#(client|server) ", line)]
    assert examples and all(len(e) == 4 for e in examples)
    assert {e[1] for e in examples} <= {"plain", "md5", "none"}


# -- systemd ----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd (apt)")
def test_units_verify_cleanly_and_are_hardened(tmp_path: Path) -> None:
    program = Path(sys.executable).parent / "emailrelay"
    for name in ("emailrelay.service", "emailrelay.socket"):
        text = (SYSTEMD / name).read_text().replace("/usr/bin/emailrelay", str(program))
        (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "emailrelay.service",
                             "emailrelay.socket"], capture_output=True, text=True, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                             "emailrelay.service"], capture_output=True, text=True, cwd=tmp_path)
    level = re.search(r"Overall exposure level for emailrelay.service: ([\d.]+)", result.stdout)
    assert level is not None, result.stdout + result.stderr
    assert float(level.group(1)) <= 2.0, result.stdout


def test_unit_command_line_and_sample_configuration_are_valid() -> None:
    argv = unit_exec_start()
    assert argv[:3] == ["--no-daemon", "--interface", "smtp=fd#3"]
    assert argv[-1] == "/etc/emailrelay.conf"
    cl = parse([*argv[:-1], str(SYSTEMD / "emailrelay.conf")])
    assert validate(cl) == []
    s = cl.process
    assert s.values("interface") == ["smtp=fd#3"]
    assert s.value("spool-dir") == "/var/spool/emailrelay"
    assert s.flag("log") and s.flag("no-syslog") and not s.flag("close-stderr")
    socket_unit = (SYSTEMD / "emailrelay.socket").read_text()
    assert "\nListenStream=25\n" in socket_unit and "\nAccept=no\n" in socket_unit
    tmpfiles = (SYSTEMD / "emailrelay.tmpfiles").read_text()
    assert "d /var/spool/emailrelay 0700 emailrelay emailrelay -" in tmpfiles


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="needs systemd-socket-activate (apt: systemd)")
def test_socket_activation_with_systemd_socket_activate(tmp_path: Path) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    argv = [*unit_exec_start()[:-1], str(SYSTEMD / "emailrelay.conf")]
    process = subprocess.Popen(
        ["systemd-socket-activate", "--listen", f"127.0.0.1:{port}", "--fdname=smtp",
         *emailrelay_command(), *argv, "--spool-dir", str(spool), "--user", "root"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        send_and_wait_for_spool(port, spool, process)
    finally:
        log = stop(process)
    assert "smtp server on fd#3" in log


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "unix"])
def test_socket_activation_with_an_inherited_descriptor(tmp_path: Path, family: str) -> None:
    if family == "ipv6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    if family == "unix":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "smtp.sock"))
        listener.listen()
    else:
        listener = socket.create_server(("::1" if family == "ipv6" else "127.0.0.1", 0),
                                        family=socket.AF_INET6 if family == "ipv6"
                                        else socket.AF_INET)
    address = listener.getsockname()
    spool = tmp_path / "spool"
    relay = [*emailrelay_command(), "--no-daemon", "--log", "--no-syslog", "--user", "root",
             "--interface", "smtp=fd#3", "--spool-dir", str(spool)]
    # A small exec wrapper puts the socket on descriptor 3, as systemd does.
    on_fd_3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execv(sys.argv[2], sys.argv[2:])"
    process = subprocess.Popen(
        [sys.executable, "-c", on_fd_3, str(listener.fileno()), *relay],
        pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with listener:  # the relay's copy is the only one once this is closed
        connection = socket.socket(listener.family)
    connection.settimeout(15)
    try:
        # Connections wait in the inherited socket's queue until the relay takes them.
        connection.connect(address if family == "unix" else address[:2])
        smtp = smtplib.SMTP()
        smtp.sock = connection
        assert smtp.getreply()[0] == 220
        smtp.sendmail("a@example.com", ["b@example.com"], "Subject: activated\r\n\r\nhi\r\n")
        smtp.quit()
        [envelope] = spool.glob("*.envelope")
        assert "X-MailRelay-To-Remote: b@example.com" in envelope.read_text()
    finally:
        connection.close()
        log = stop(process)
    assert "smtp server on fd#3" in log


# -- Docker -------------------------------------------------------------------------------------

def dockerfile_instruction(name: str) -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    [value] = re.findall(rf"^{name}\s+(.*)$", text, re.MULTILINE)
    return value.strip()


def test_container_runs_unprivileged_with_the_spool_on_a_volume(tmp_path: Path) -> None:
    assert dockerfile_instruction("USER").split(":")[0] == "emailrelay"
    assert json.loads(dockerfile_instruction("VOLUME")) == ["/var/spool/emailrelay"]
    entrypoint = json.loads(dockerfile_instruction("ENTRYPOINT"))
    assert entrypoint[0] == "emailrelay"
    cl = parse(entrypoint[1:])
    assert validate(cl) == []
    assert cl.process.value("spool-dir") == "/var/spool/emailrelay"
    assert cl.process.value("port") == dockerfile_instruction("EXPOSE")
    # The same command line works (with a free port and a spool here).
    port = free_port()
    args = list(entrypoint[1:])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--spool-dir") + 1] = str(tmp_path / "spool")
    process = subprocess.Popen([*emailrelay_command(), *args, "--user", "root",
                                "--interface", "127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        send_and_wait_for_spool(port, tmp_path / "spool", process)
    finally:
        stop(process)


def entrypoint_arguments(port: int, spool: Path) -> list[str]:
    """The image's ENTRYPOINT arguments with a free port and a spool directory here."""
    args = list(json.loads(dockerfile_instruction("ENTRYPOINT"))[1:])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--spool-dir") + 1] = str(spool)
    return args


NOBODY = 65534


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_container_command_line_as_an_unprivileged_user() -> None:
    """The entrypoint as the image runs it: not root, no --user, in a spool directory of
    its own with the image's mode 0700; the message is stored and the files are its."""
    # Not under tmp_path: pytest makes that 0700 for root, and nobody could not get in.
    base = Path(tempfile.mkdtemp(prefix="emailrelay-nonroot-"))
    try:
        base.chmod(0o755)
        spool = base / "spool"
        spool.mkdir(mode=0o700)
        os.chown(spool, NOBODY, NOBODY)
        port = free_port()
        process = subprocess.Popen(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             *emailrelay_command(), *entrypoint_arguments(port, spool),
             "--interface", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=spool)
        try:
            send_and_wait_for_spool(port, spool, process)
            status = Path(f"/proc/{process.pid}/status").read_text()
            assert re.search(rf"^Uid:\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}$", status,
                             re.MULTILINE), status
            assert re.search(r"^Groups:\s*$", status, re.MULTILINE), status
        finally:
            log = stop(process)
        stored = list(spool.glob("emailrelay.*"))
        assert len(stored) == 2, log  # the envelope and the content
        assert {(p.stat().st_uid, p.stat().st_gid) for p in stored} == {(NOBODY, NOBODY)}
        assert "smtp server on 127.0.0.1:" in log and "error" not in log, log
    finally:
        shutil.rmtree(base)
