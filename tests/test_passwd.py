"""emailrelay-passwd: the documented outputs byte for byte, every option and every error."""

from __future__ import annotations

import base64
import hmac
import subprocess
import sys

import pytest

from emailrelay.auth import hashstate

# The 2.6 reference documentation's examples (secrets-file section).
DOCUMENTED = {
    "password123": "9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=",
    "e=mc2": "v1HOpuLIbbvgoJjhueeoqwfvtIp2C+gMA285ke+xxow=",
    "my password": "x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw=",
}


def passwd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "emailrelay.cli.passwd", *args],
                          input=stdin.encode(), capture_output=True, timeout=20)


@pytest.mark.parametrize("password", sorted(DOCUMENTED))
def test_documented_outputs_byte_for_byte(password: str) -> None:
    result = passwd(stdin=password + "\n")
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout == DOCUMENTED[password].encode() + b"\n"


def test_only_the_first_line_is_read_and_trimmed() -> None:
    result = passwd(stdin=" \tpassword123\r\nsecond line\n")
    assert result.stdout == DOCUMENTED["password123"].encode() + b"\n"


def test_password_option_base64_dotted_and_none() -> None:
    assert passwd("-p", "e=mc2").stdout.decode().strip() == DOCUMENTED["e=mc2"]
    assert passwd("--password=bXkgcGFzc3dvcmQ=", "--base64").stdout.decode().strip() == (
        DOCUMENTED["my password"])
    dotted = passwd("--dotted", stdin="password123\n").stdout.decode().strip()
    assert dotted == ("1166597620.4004140933.3051720914.3263081309.2956295572.3685173046."
                      "2598721003.2716057253")
    assert hashstate.from_dotted(dotted) == base64.b64decode(DOCUMENTED["password123"])
    assert passwd("-H", "none", stdin="my password\n").stdout == b"my+20password\n"
    assert passwd("--hash=NONE", "-p", "e=mc2").stdout == b"e+3Dmc2\n"
    # The undocumented --tls and --tls-config change nothing here.
    assert passwd("-t", "-T", "openssl", "-p", "e=mc2").stdout.decode().strip() == (
        DOCUMENTED["e=mc2"])


@pytest.mark.parametrize("name", ["SHA1", "sha256"])
def test_sha_secrets_are_hmac_states(name: str) -> None:
    out = passwd("--hash", name, stdin="e=mc2\n").stdout.decode().strip()
    secret = base64.b64decode(out)
    assert len(secret) == hashstate.secret_size(name.lower())
    assert hashstate.hmac_from_secret(secret, b"<1.2@x>", name.lower()) == hmac.new(
        b"e=mc2", b"<1.2@x>", name.lower()).digest()


@pytest.mark.parametrize(("args", "stdin", "stderr"), [
    ((), "", "emailrelay-passwd: invalid password\n"),
    ((), "  \t\r\n", "emailrelay-passwd: invalid password\n"),
    (("-p", ""), "ignored\n", "emailrelay-passwd: invalid password\n"),
    (("-H", "sha512"), "x\n", "emailrelay-passwd: exception: invalid hash function\n"),
    (("-H", "SHA1", "--dotted"), "x\n",
     "emailrelay-passwd: exception: --dotted only works for md5\n"),
    (("-b",), "!!!\n", "emailrelay-passwd: exception: invalid base64 encoding\n"),
    (("--nonsense",), "x\n", 'emailrelay-passwd: invalid option: "--nonsense"\n'),
])
def test_errors_exit_1_with_e_mailrelay_messages(args: tuple[str, ...], stdin: str,
                                                 stderr: str) -> None:
    result = passwd(*args, stdin=stdin)
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == stderr


def test_an_argument_is_refused_so_the_password_stays_off_the_command_line() -> None:
    result = passwd("password123", stdin="x\n")
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert lines[0] == ("emailrelay-passwd: too many command-line arguments (the password "
                        "is read from the standard input)")
    assert lines[1] == "usage: emailrelay-passwd"


def test_help() -> None:
    result = passwd("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert text.startswith("usage: emailrelay-passwd")
    assert "--hash <function>" in text and "--dotted" in text and "--tls-config" not in text
    assert "--tls-config" in passwd("--help", "--verbose").stdout.decode()
