"""Option checks for --dnsbl, --admin and our connection-policy and metrics options."""

from __future__ import annotations

import socket

import pytest

from emailrelay.options.parser import UsageError, parse
from emailrelay.options.validate import validate
from tests.support.relay import free_port, run_emailrelay


def check(*argv: str) -> None:
    validate(parse(list(argv)))


@pytest.mark.parametrize(("argv", "error"), [
    (["--admin-terminate"], "the --admin-terminate option requires --admin"),
    (["--dnsbl", "bl.example"], "--dnsbl requires --remote-clients or -r"),
    (["-r", "--dnsbl", "1.2.3.4:53,5000"], "invalid dnsbl configuration: not enough "
                                           "comma-separated fields"),
    (["-r", "--dnsbl", "bl.example,1,fast"], "invalid dnsbl configuration: invalid timeout"),
    (["--metrics-address", "127.0.0.1"], "the --metrics-address option requires "
                                         "--metrics-port"),
    (["--metrics-port", "0"], "invalid value for --metrics-port: \"0\""),
    (["--metrics-port", "9100", "--metrics-address", "localhost"], "not an IP address"),
    (["--max-connections", "-1"], "invalid value for --max-connections"),
    (["--max-client-connections", "many"], "invalid value for --max-client-connections"),
    (["--shutdown-grace", "soon"], "invalid value for --shutdown-grace"),
    (["--admin", "99999"], "invalid value for --admin"),
])
def test_bad_combinations_and_values(argv: list[str], error: str) -> None:
    with pytest.raises(UsageError, match=error.replace("(", r"\(")):
        check(*argv)


def test_good_combinations() -> None:
    check("--admin", "10026", "--admin-terminate")
    check("--remote-clients", "--dnsbl", "zen.example,bl.example,2,-1500,127.0.0.1:53")
    check("-r", "--dnsbl", "127.0.0.1:53,1500,1,zen.example")
    check("--metrics-port", "9100", "--metrics-address", "::1", "--max-connections", "0",
          "--max-client-connections", "5", "--shutdown-grace", "0")


def test_the_program_reports_them() -> None:
    done = run_emailrelay("--admin-terminate")
    assert done.returncode == 1
    assert "emailrelay: usage error: the --admin-terminate option requires --admin" \
        in done.stderr


def test_help_lists_the_new_options() -> None:
    out = run_emailrelay("--help", "--verbose").stdout
    assert "Metrics and health options:" in out
    for option in ("--metrics-port <port>", "--metrics-address <ip-address>",
                   "--max-connections <count>", "--max-client-connections <count>",
                   "--shutdown-grace <time>", "--dnsbl <config>", "--admin <port>"):
        assert option in out


@pytest.mark.parametrize("option", ["--metrics-port", "--admin"])
def test_a_port_in_use_is_exit_code_2(tmp_path, option: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_emailrelay("--no-daemon", "--user", "root", "--interface", "127.0.0.1",
                              "--port", str(free_port()), "--spool-dir", str(tmp_path),
                              option, str(port))
    assert done.returncode == 2
    assert f"cannot bind 127.0.0.1:{port}" in done.stderr
