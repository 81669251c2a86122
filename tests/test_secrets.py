"""Secrets files: every line type E-MailRelay 2.6 reads, OpenWrt's old order, every error."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from emailrelay.auth import md5state
from emailrelay.auth import secrets as secrets_module
from emailrelay.auth.secrets import SecretsError, SecretsFile, parse_secrets, read_secrets
from tests.support.logs import captured_log

CAROL_MD5 = "x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw="  # "my password", from the 2.6 docs
CAROL_DOTTED = ("688498119.2977922305.1278051807.3015243256.2216875978.2833592318."
                "2902375592.3156808220")


def parse(text: str):
    return parse_secrets(text, "test.auth")


def error_of(text: str) -> str:
    with pytest.raises(SecretsError) as info:
        parse(text)
    return str(info.value)


def test_server_plain_xtext_and_its_base64_equivalent() -> None:
    s, warnings = parse("server plain alice e+3Dmc2\n"
                        "server plain:b Y2Fyb2w= bXkgcGFzc3dvcmQ= # carol\n")
    assert warnings == []
    assert s.server_secret("plain", "alice").value == b"e=mc2"
    carol = s.server_secret("PLAIN", "carol")
    assert carol.value == b"my password" and carol.line == 2 and carol.side == "server"
    assert s.server_types() == {"plain"} and s.server_users() == ["alice", "carol"]


def test_md5_secret_base64_and_dotted_forms_are_the_same_state() -> None:
    s, _ = parse(f"server md5 carol {CAROL_MD5}\nserver md5 carol2 {CAROL_DOTTED}\n")
    assert s.server_secret("md5", "carol").value == base64.b64decode(CAROL_MD5)
    assert s.server_secret("md5", "carol2").value == md5state.make_secret(b"my password")


@pytest.mark.parametrize(("type_field", "canonical"), [
    ("login", "plain"), ("LOGIN", "plain"), ("PLAIN", "plain"), ("Plain:B", "plain"),
    ("cram-md5", "md5"), ("apop", "md5"), ("MD5", "md5")])
def test_type_aliases_and_case(type_field: str, canonical: str) -> None:
    secret = CAROL_MD5 if canonical == "md5" else "cGFzcw=="
    user = "Ym9i" if type_field.lower() == "plain:b" else "bob"
    s, _ = parse(f"SERVER {type_field} {user} {secret}\n")
    assert s.server_secret(canonical, "bob") is not None


def test_user_names_are_case_sensitive() -> None:
    s, _ = parse("server plain Bob pw\n")
    assert s.server_secret("plain", "Bob") is not None
    assert s.server_secret("plain", "bob") is None


def test_client_lines_selectors_noauth_and_oauth() -> None:
    token = base64.b64encode(b"user=bob\x01auth=Bearer x\x01\x01").decode()
    s, _ = parse("client plain bob password123\n"
                 "client plain alice e+3Dmc2 use_alice\n"
                 "client plain:b = = noauth\n"
                 f"client oauth bob {token} oauth_bob\n"
                 f"client md5 bob {CAROL_MD5} hashed\n")
    assert s.client_secret("plain").value == b"password123"
    assert s.client_secret("plain", "use_alice").id == "alice"
    assert s.client_secret("oauth", "oauth_bob").value.startswith(b"user=bob")
    assert s.client_types("hashed") == {"md5"}
    assert s.is_noauth("noauth") and not s.is_noauth("use_alice")
    assert s.selectors() == {"", "use_alice", "noauth", "oauth_bob", "hashed"}
    assert s.server == {}


def test_comments_blank_lines_and_trailing_comments() -> None:
    s, warnings = parse("# a comment\n\n   \n\t# indented comment\n"
                        "client plain bob pw # no selector\n"
                        "client plain:b Ym9i cGFzcw== sel # with a selector\n")
    assert warnings == []
    assert s.client_secret("plain").value == b"pw"
    assert s.client_secret("plain", "sel").value == b"pass"


def test_a_sixth_field_is_a_warning_and_ignored() -> None:
    s, warnings = parse("client plain bob pw selector extra\n")
    assert s.client_secret("plain", "selector") is not None
    assert warnings == ["secrets file \"test.auth\": line 1: too many fields: the extra ones "
                        "are ignored"]


def test_trust_lines_with_wildcards_cidr_and_ipv6() -> None:
    s, _ = parse("server none 192.168.0.* localipv4\n"
                 "server none 192.168.*.* widerv4\n"
                 "server none 10.0.0.0/8 ten\n"
                 "server none 172.16.1.5 one\n"
                 "server none fe80::/64 localipv6\n")
    assert s.trusted("192.168.0.7").keyword == "localipv4"  # the most specific wins
    assert s.trusted("192.168.5.7").keyword == "widerv4"
    assert s.trusted("10.200.3.4").keyword == "ten"
    assert s.trusted("172.16.1.5").keyword == "one"
    assert s.trusted("172.16.1.6") is None
    assert s.trusted("fe80::1%eth0").keyword == "localipv6"
    assert s.trusted("::ffff:192.168.0.9").keyword == "localipv4"
    assert s.trusted("2001:db8::1") is None
    assert s.trusted("not-an-address") is None
    assert s.trusted("192.168.0.7").line == 1


def test_openwrt_old_field_order_is_read_as_2_6_lines() -> None:
    s, warnings = parse("NONE server 192.168.1.* keyword\n"
                        "LOGIN client smtpuser@smtpserver smtppassword\n"
                        "LOGIN server user1 secret\n"
                        f"CRAM-MD5 server user2 {CAROL_DOTTED}\n"
                        "APOP server user3 plaintext\n")
    assert s.trusted("192.168.1.20").keyword == "keyword"
    assert s.client_secret("plain").id == "smtpuser@smtpserver"
    assert s.client_secret("plain").value == b"smtppassword"
    assert s.server_secret("plain", "user1").value == b"secret"
    assert s.server_secret("md5", "user2").value == md5state.make_secret(b"my password")
    assert s.server_secret("plain", "user3").value == b"plaintext"
    assert warnings[0] == ("secrets file \"test.auth\": line 1: old field order: read as "
                           "\"server none 192.168.1.* keyword\"")
    assert len(warnings) == 5


@pytest.mark.parametrize(("text", "message"), [
    ("server plain alice\n", "line 1: too few fields"),
    ("server\n", "line 1: too few fields"),
    ("both plain alice pw\n", "line 1: invalid value in first field: [both]"),
    ("PLAIN server alice pw\n", "line 1: invalid value in first field: [PLAIN]"),
    ("client none 1.2.3.4 x\n", "line 1: \"none\" lines are server lines"),
    ("server foo alice pw\n", "line 1: invalid password type [foo]"),
    ("server oauth alice cHc=\n", "line 1: invalid password type [oauth]"),
    ("server plain:x alice pw\n", "line 1: invalid password type [plain:x]"),
    ("server md5:b alice pw\n", "line 1: invalid password type [md5:b]"),
    ("server plain:b !!! cHc=\n", "line 1: invalid base64 encoding of the user name"),
    ("server plain:b YQ== not-base64\n", "line 1: invalid base64 encoding of the password"),
    ("server md5 alice not*base64\n", "line 1: invalid base64 encoding of the secret"),
    ("server md5 alice cHc=\n", "line 1: invalid md5 secret"),
    ("server plain alice a\nserver plain alice b\n", "line 2: duplicate server secret"),
    ("server plain alice a\nserver login alice b\n", "line 2: duplicate server secret"),
    ("client plain a b\nclient plain c d\n", "line 2: duplicate client secret"),
    ("client plain a b s\nclient plain c d s\n", "line 2: duplicate client secret"),
    ("server none 10.0.0.* x\nserver none 10.0.0.0/24 y\n",
     "line 2: duplicate server trust address"),
    ("server none 10.0.*.1 x\n", "line 1: invalid address range [10.0.*.1]"),
    ("server none 10.* x\n", "line 1: invalid address range [10.*]"),
    ("server none example.com x\n", "line 1: invalid address range [example.com]"),
    ("server none 10.0.0.0/33 x\n", "line 1: invalid address range [10.0.0.0/33]"),
])
def test_every_error_names_the_file_and_line(text: str, message: str) -> None:
    error = error_of("# first line is a comment\n" + text)
    assert error.startswith("invalid secrets file \"test.auth\": ")
    line_number = int(message.split()[1].rstrip(":")) + 1
    assert f"line {line_number}:" in error
    assert message.split(":", 1)[1].strip() in error


def test_all_bad_lines_are_reported_together() -> None:
    error = error_of("server plain a\nserver plain ok pw\nfoo plain b c\n")
    assert "line 1: too few fields" in error and "line 3: invalid value in first field" in error


def test_reading_a_file_and_the_permission_warning(tmp_path: Path) -> None:
    path = tmp_path / "emailrelay.auth"
    path.write_text("server plain alice secret\n")
    path.chmod(0o600)
    secrets, warnings = read_secrets(str(path))
    assert warnings == [] and secrets.server_users() == ["alice"]
    path.chmod(0o644)
    _, warnings = read_secrets(str(path))
    assert warnings == [f"secrets file \"{path}\" is readable by other users: use chmod 600 "
                        f"\"{path}\""]


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"cannot read secrets file .*No such file"):
        read_secrets(str(tmp_path / "absent"))


def test_secrets_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    path.write_text("server plain alice one\n")
    path.chmod(0o600)
    f = SecretsFile(str(path))
    assert f.current().server_secret("plain", "alice").value == b"one"

    def changed(text: str) -> None:
        path.write_text(text)
        stamp = os.stat(path).st_mtime_ns + 10**9
        os.utime(path, ns=(stamp, stamp))
        f._checked -= secrets_module.RELOAD_INTERVAL  # as if a second had passed

    changed("server plain alice two\n")
    assert f.current().server_secret("plain", "alice").value == b"two"
    changed("server plain alice\n")  # broken: the previous contents stay
    with captured_log() as lines:
        assert f.current().server_secret("plain", "alice").value == b"two"
    assert lines[-1].startswith("error: invalid secrets file")
    assert lines[-1].endswith("line 1: too few fields: still using the previous contents")
