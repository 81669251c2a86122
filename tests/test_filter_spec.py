"""Filter and verifier specifications, and the start-up checks on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emailrelay.filters.spec import FilterSpec, SpecError, parse_chain, parse_one
from emailrelay.options.parser import UsageError, parse
from emailrelay.options.validate import validate
from emailrelay.verify.spec import VerifierSpec, parse_spec
from tests.support.relay import run_emailrelay


def test_repeated_options_and_comma_chains_make_one_chain_in_order() -> None:
    specs, _ = parse_chain(["exit:0,/bin/true", "net:127.0.0.1:99", "msgid:,deliver:nodelete"])
    assert specs == [FilterSpec("exit", "0"), FilterSpec("file", "/bin/true"),
                     FilterSpec("net", "127.0.0.1:99"), FilterSpec("msgid", ""),
                     FilterSpec("deliver", "nodelete")]


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("", "exit", "0"),
    ("exit:103", "exit", "103"),
    ("sleepms:10", "sleepms", "10"),
    ("spam:127.0.0.1:783", "spam", "127.0.0.1:783"),
    ("spam-edit:/run/spamd.s", "spam-edit", "/run/spamd.s"),
    ("net:[::1]:10025", "net", "[::1]:10025"),
    ("net:localhost:smtp", "net", "localhost:smtp"),
    ("split:raw;2525", "split", "raw;2525"),
    ("mx:127.0.0.1:53;nst=3;rt=9", "mx", "127.0.0.1:53;nst=3;rt=9"),
    ("file:/usr/local/bin/f", "file", "/usr/local/bin/f"),
    ("/usr/local/bin/f:x", "file", "/usr/local/bin/f:x"),
])
def test_items(text: str, kind: str, value: str) -> None:
    assert parse_one(text) == FilterSpec(kind, value)


def test_relative_program_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_one("bin/filter") == FilterSpec("file", str(tmp_path / "bin/filter"))


@pytest.mark.parametrize(("text", "error"), [
    ("exit:", "numeric value missing"),
    ("exit:x1", "invalid numeric value: x1"),
    ("exit:-1", "invalid numeric value: -1"),
    ("sleepms:99999999999", "numeric value too big: 99999999999"),
    ("net:", "invalid address"),
    ("net:nohostport", "invalid address"),
    ("net::25", "invalid address"),
    ("spam:127.0.0.1:99999", "port out of range"),
    ("spam:127.0.0.1:nosuchservice", "unknown port"),
    ("file:", "empty file path"),
])
def test_bad_items(text: str, error: str) -> None:
    with pytest.raises(SpecError, match=error):
        parse_one(text)


def test_program_warnings(tmp_path: Path) -> None:
    _, warnings = parse_chain([str(tmp_path / "missing"), str(tmp_path)])
    assert warnings == [f"filter program does not exist: {tmp_path / 'missing'}",
                        f"invalid program: {tmp_path}"]
    _, warnings = parse_chain(["mx:nst=x;127.0.0.1;bogus"])
    assert warnings == ["invalid mx filter configuration: ignoring [nst=x]",
                        "invalid mx filter configuration: ignoring [bogus]"]


@pytest.mark.parametrize(("text", "spec"), [
    ("", VerifierSpec("exit", "0")),
    ("exit:1", VerifierSpec("exit", "1")),
    ("net:127.0.0.1:7000", VerifierSpec("net", "127.0.0.1:7000")),
    ("account:1000-1002;lowercase", VerifierSpec("account", "1000-1002;lowercase")),
    ("file:/bin/true", VerifierSpec("file", "/bin/true")),
    ("/bin/true", VerifierSpec("file", "/bin/true")),
])
def test_verifier_specs(text: str, spec: VerifierSpec) -> None:
    assert parse_spec(text)[0] == spec


@pytest.mark.parametrize(("text", "error"), [
    ("exit:x", "not a numeric exit code: x"),
    ("net:oops", "invalid address"),
    ("account:2000-1000", "invalid uid range: 2000-1000"),
    ("account:1x", "invalid uid range: 1x"),
    ("file:", "empty file path"),
])
def test_bad_verifier_specs(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_spec(text)


@pytest.mark.parametrize(("argv", "message"), [
    (["--filter=exit:x"], "invalid filter specification: invalid numeric value: x"),
    (["--filter=exit:0,net:"], "invalid filter specification: invalid address"),
    (["--address-verifier=exit:no"],
     "invalid verifier specification: not a numeric exit code: no"),
    (["--filter=exit:0", "--dont-serve"],
     "the --filter option cannot be used with --as-client or --dont-serve"),
    (["--filter=exit:0", "--no-smtp"], "the --filter option cannot be used with --no-smtp"),
    (["--client-filter=exit:0"], "--client-filter requires --forward-to"),
])
def test_start_up_checks(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate(parse(argv))


def test_start_up_warnings_for_missing_programs(tmp_path: Path) -> None:
    warnings = validate(parse([f"--filter={tmp_path}/nope",
                               f"--address-verifier={tmp_path}/gone"]))
    assert f"filter program does not exist: {tmp_path}/nope" in warnings
    assert f"verifier program does not exist: {tmp_path}/gone" in warnings


def test_the_program_reports_a_bad_filter_and_exits_1(tmp_path: Path) -> None:
    result = run_emailrelay("--no-daemon", "--port", "0", "--spool-dir", str(tmp_path),
                            "--filter", "exit:banana")
    assert result.returncode == 1
    assert "usage error: invalid filter specification: invalid numeric value: banana" in \
        result.stderr
    assert not any(os.scandir(tmp_path))
