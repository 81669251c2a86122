"""The option table, command-line grammar, configuration files and instances."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from emailrelay.options.help import help_text
from emailrelay.options.parser import UsageError, parse
from emailrelay.options.table import BY_NAME, OPTIONS, Arity
from emailrelay.options.validate import validate
from tests.support.relay import run_emailrelay

REFERENCE = Path(__file__).resolve().parent / "data/emailrelay-2.6-options.tsv"


def reference_rows() -> list[dict[str, str]]:
    with open(REFERENCE, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference table is absent")
def test_every_reference_option_is_in_the_table_with_its_letter_and_arity() -> None:
    rows = reference_rows()
    assert len(rows) == 74
    for row in rows:
        opt = BY_NAME[row["long"]]
        assert (opt.short or "") == row["short"], row["long"]
        assert opt.arity.value == row["values"], row["long"]
        if row["default"]:
            assert opt.default == row["default"], row["long"]


def test_table_has_no_duplicate_names() -> None:
    assert len({o.name for o in OPTIONS}) == len(OPTIONS)


def test_long_forms_with_equals_and_separate_values() -> None:
    cl = parse(["--port=25", "--spool-dir", "/tmp/x", "--filter", "a", "--filter=b"])
    s = cl.process
    assert s.value("port") == "25"
    assert s.value("spool-dir") == "/tmp/x"
    assert s.values("filter") == ["a", "b"]


def test_short_forms_and_combined_flags() -> None:
    cl = parse(["-ltv", "-p", "2525", "-s/tmp/spool"])
    s = cl.process
    assert s.flag("log") and s.flag("no-daemon") and s.flag("verbose")
    assert s.value("port") == "2525"
    assert s.value("spool-dir") == "/tmp/spool"


def test_shorthands_imply_their_options() -> None:
    s = parse(["--as-client", "smtp.example.com:25"]).process
    for name in ("log", "no-syslog", "no-daemon", "dont-serve", "forward"):
        assert s.flag(name), name
    assert s.value("forward-to") == "smtp.example.com:25"
    s = parse(["--as-server"]).process
    assert s.flag("log") and s.flag("close-stderr") and not s.flag("forward")


def test_optional_value_options() -> None:
    assert parse(["--anonymous"]).process.given["anonymous"] is True
    assert parse(["--anonymous=vrfy,content"]).process.value("anonymous") == "vrfy,content"


def test_defaults_come_from_the_table() -> None:
    s = parse([]).process
    assert s.value("port") == "25"
    assert s.value("spool-dir") == "/var/spool/emailrelay"
    assert s.int("connection-timeout") == 40
    assert s.value("pop-port") == "110"


@pytest.mark.parametrize(("argv", "message"), [
    (["--no-such-option"], 'invalid option: "--no-such-option"'),
    (["-%"], 'invalid option: "-%"'),
    (["--port"], 'no value supplied for "--port"'),
    (["-p"], "no value supplied for -p"),
    (["--log=maybe"], 'cannot give a value with "--log" (maybe)'),
    (["--port", "1", "--port", "2"], 'duplicate use of "--port"'),
    (["a.conf", "b.conf"], "too many non-option arguments"),
    (["--out-port", "25"], 'invalid option: "--out-port"'),
])
def test_grammar_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv, read_config=False)


@pytest.mark.parametrize(("argv", "message"), [
    (["--port", "http"], "invalid value for --port"),
    (["--port", "70000"], "invalid value for --port"),
    (["--size", "-1"], "invalid value for --size"),
    (["--anonymous=everything"], "unknown keyword"),
    (["--server-smtp-config=+turbo"], "unknown keyword"),
    (["--log-format=colour"], "unknown keyword"),
    (["--as-client", "a:25", "--as-server"], "conflicting options"),
])
def test_value_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate(parse(argv))


def test_switch_syntax_is_accepted_in_every_form() -> None:
    validate(parse(["--server-smtp-config=+chunking,-pipelining,nostrictparsing,=smtputf8",
                    "--server-smtp-config", "with-smtputf8,without-alabels"]))


def test_an_option_whose_feature_has_not_landed_is_refused() -> None:
    pending = [o for o in OPTIONS if o.pending]
    if not pending:
        pytest.skip("every feature has landed")
    opt = pending[0]
    argv = [f"--{opt.name}"] + (["x"] if opt.takes_value else [])
    with pytest.raises(UsageError, match="not implemented yet"):
        validate(parse(argv))


def test_every_option_parses_from_the_command_line() -> None:
    for opt in OPTIONS:
        argv = [f"--{opt.name}=1"] if opt.arity in (Arity.ONE, Arity.MANY, Arity.OPTIONAL) \
            else [f"--{opt.name}"]
        assert opt.name in parse(argv).process.given or opt.name in (
            "as-client", "as-proxy")


def test_configuration_file(tmp_path: Path) -> None:
    conf = tmp_path / "emailrelay.conf"
    conf.write_text("# emailrelay.conf\nlog\n#verbose # commented out\n"
                    "spool-dir /tmp/spool\nport 10025\n\nfilter @app/filter.sh\n"
                    "domain \"example.com\"\n")
    s = parse([str(conf)]).process
    assert s.flag("log") and not s.flag("verbose")
    assert s.value("spool-dir") == "/tmp/spool"
    assert s.value("port") == "10025"
    assert s.values("filter")[0].endswith("/filter.sh")
    assert not s.values("filter")[0].startswith("@app")
    assert s.value("domain") == "example.com"


def test_command_line_overrides_the_configuration_file(tmp_path: Path) -> None:
    conf = tmp_path / "emailrelay.conf"
    conf.write_text("port 10025\n")
    assert parse(["--port", "2525", str(conf)]).process.value("port") == "2525"


def test_configuration_file_errors_name_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("log\nno-such-thing 1\n")
    with pytest.raises(UsageError, match=r"bad.conf:2"):
        parse([str(conf)])
    with pytest.raises(UsageError, match="cannot read configuration file"):
        parse([str(tmp_path / "missing.conf")])


def test_named_instances_and_process_wide_options() -> None:
    cl = parse(["--log", "--in-spool-dir", "/s/in", "--in-port", "25", "--in-remote-clients",
                "--out-spool-dir", "/s/out", "--out-port", "587", "--out-log-time",
                "--in-verbose", "--domain", "example.com"])
    names = [s.name for s in cl.instances]
    assert names == ["in", "out"]
    inst_in, inst_out = cl.instances
    assert inst_in.value("port") == "25" and inst_in.flag("remote-clients")
    assert inst_out.value("port") == "587" and not inst_out.flag("remote-clients")
    # Unprefixed options go to the first instance; process-wide ones count only there.
    assert inst_in.value("domain") == "example.com" and inst_out.value("domain") is None
    assert cl.process.flag("verbose") and cl.process.flag("log")
    assert not cl.process.flag("log-time")


def test_numbered_instances() -> None:
    cl = parse(["--1-spool-dir", "/a", "--2-spool-dir", "/b", "--2-port", "26"])
    assert [s.name for s in cl.instances] == ["1", "2"]
    assert cl.instances[1].value("port") == "26"


def test_brief_help_lists_basic_options_and_verbose_help_lists_all() -> None:
    brief = help_text(False)
    assert brief.count("usage:") == 1
    assert "--as-proxy" in brief and "--pop-port" not in brief
    full = help_text(True)
    assert full.count("usage:") == 1
    for opt in OPTIONS:
        assert f"--{opt.name}" in full, opt.name


def test_program_help_version_and_errors() -> None:
    result = run_emailrelay("--help")
    assert result.returncode == 0 and "usage:" in result.stdout
    result = run_emailrelay("--version")
    assert result.returncode == 0 and result.stdout.startswith("E-MailRelay V2.6")
    result = run_emailrelay("--bogus")
    assert result.returncode == 1
    assert result.stderr.startswith('emailrelay: error: invalid option: "--bogus"')
    result = run_emailrelay("--port", "99999", "--no-daemon")
    assert result.returncode == 1 and "usage error: invalid value for --port" in result.stderr
