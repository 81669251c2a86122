"""OpenWrt ``emailrelay`` sections as E-MailRelay command lines.

The arguments follow OpenWrt's init script (``/etc/init.d/emailrelay``) one by one:
``--no-daemon``, the lists, ``--as-<mode>`` and the smarthost, the other options in
:data:`~emailrelay.options.table.UCI_OPTIONS` order, ``extra_cmdline``, and
``--forward-to-some``.  Where the script goes wrong this does not:

* a value of the wrong type is an error naming the section and option (the script reads
  an unknown boolean as "off" and ignores unknown options);
* ``server_tls`` given as a file, as older configurations and the default file's comments
  do, or as "key,full-chain" as OpenWrt's wiki advises, enables TLS with those files
  (the script passed the file to ``--server-tls``, which takes no value, and the relay did
  not start; the newer script ignores it); a key with a full-chain file works as two
  ``--server-tls-certificate`` options, key first;
* an ``option`` where a list is expected counts as a one-item list (the script skips it);
* proxy and client modes without ``smarthost``, or a ``smarthost`` in the other modes, are
  errors (the script builds a command line that cannot work);
* options also count in mode ``cmdline`` (the script ignores them there);
* ``extra_cmdline`` is split as a shell splits words, quotes included (the script splits
  at blanks only).

As in the script, a section without ``enabled`` is enabled.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from emailrelay.options.parser import UsageError, Value
from emailrelay.options.table import UCI_BY_NAME, UCI_OPTIONS
from emailrelay.options.validate import VALUE_CHECKS
from emailrelay.uci.parser import Section, UciFile

SECTION_TYPE = "emailrelay"
MODES = ("server", "proxy", "client", "cmdline")
TRUE_WORDS = ("1", "on", "true", "yes", "enabled")
FALSE_WORDS = ("0", "off", "false", "no", "disabled")
ALWAYS = ("--forward-to-some",)  # the init script ends every command line with it


@dataclass
class SectionCommand:
    section: Section
    enabled: bool
    arguments: list[str]  # E-MailRelay's arguments, without the program name


class _Context:
    def __init__(self, path: str, section: Section) -> None:
        self.path = path
        self.section = section

    def error(self, text: str, option: str | None = None) -> UsageError:
        line = self.section.options[option].line if option in self.section.options else (
            self.section.line)
        what = f": option \"{option}\"" if option else ""
        return UsageError(f"{self.path}:{line}: section \"{self.section.label}\"{what}: {text}")


def commands(uci: UciFile) -> list[SectionCommand]:
    """Check every ``emailrelay`` section; build the command line of the enabled ones."""
    result = []
    for section in uci.of_type(SECTION_TYPE):
        context = _Context(uci.path, section)
        values = typed_values(context)
        enabled = values.get("enabled", True) is True
        result.append(SectionCommand(section, enabled,
                                     arguments(context, values) if enabled else []))
    return result


def typed_values(context: _Context) -> dict[str, Value]:
    """Check each option's name, type and value; empty values count as not set."""
    values: dict[str, Value] = {}
    for name, given in context.section.options.items():
        spec = UCI_BY_NAME.get(name)
        if spec is None:
            raise context.error("unknown option (see OpenWrt's emailrelay option table)", name)
        items = [v for v in given.values if v]
        if not items:
            continue
        if spec.type != "list" and len(items) > 1:
            raise context.error(f"takes one value, not a list of {len(items)}", name)
        if spec.type == "bool":
            values[name] = _boolean(context, name, items[0])
            continue
        for item in items:
            _check(context, name, item)
        values[name] = items if spec.type == "list" else items[0]
    if "mode" in values and values["mode"] not in MODES:
        raise context.error(f"\"{values['mode']}\" is not one of {', '.join(MODES)}", "mode")
    return values


def _boolean(context: _Context, name: str, value: str) -> bool | str:
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    if name == "server_tls" and value.startswith("/"):
        return value  # the older form: the certificate file(s), see _tls_files
    raise context.error(f"\"{value}\" is not a boolean (use 1 or 0)", name)


def _check(context: _Context, name: str, value: str) -> None:
    option = UCI_BY_NAME[name].option
    check = VALUE_CHECKS.get(option) if option else None
    if check is not None:
        try:
            check(value)
        except ValueError as e:
            raise context.error(f"invalid value \"{value}\": {e}", name) from None


def arguments(context: _Context, values: dict[str, Value]) -> list[str]:
    values = _tls_files(context, dict(values))
    args = ["--no-daemon"]
    for spec in UCI_OPTIONS:
        if spec.option and spec.type == "list":
            for item in values.get(spec.name, []):
                args += [f"--{spec.option}", spec.prefix + str(item)]
    args += _mode(context, values)
    for spec in UCI_OPTIONS:
        value = values.get(spec.name)
        if not spec.option or spec.type == "list" or value is None or value is False:
            continue
        args += [f"--{spec.option}"] if value is True else [f"--{spec.option}", str(value)]
    extra = values.get("extra_cmdline")
    if isinstance(extra, str):
        try:
            args += shlex.split(extra)
        except ValueError as e:
            raise context.error(f"cannot split into words: {e}", "extra_cmdline") from None
    return args + list(ALWAYS)


def _mode(context: _Context, values: dict[str, Value]) -> list[str]:
    mode = values.get("mode")
    smarthost = values.get("smarthost")
    if mode is None:
        raise context.error(f"no mode: set option mode to one of {', '.join(MODES)}")
    if mode in ("proxy", "client"):
        if smarthost is None:
            raise context.error(f"mode {mode} needs option smarthost (host:port)")
        return [f"--as-{mode}", str(smarthost)]
    if smarthost is not None:
        raise context.error(f"is used only in modes proxy and client, not {mode}", "smarthost")
    return [] if mode == "cmdline" else [f"--as-{mode}"]


def _tls_files(context: _Context, values: dict[str, Value]) -> dict[str, Value]:
    """Resolve the older ``server_tls <file>`` form and check the certificate options."""
    legacy = values.get("server_tls")
    if isinstance(legacy, str):
        if "server_tls_key" in values or "server_tls_certificate" in values:
            raise context.error("gives the certificate file itself, so do not also set "
                                "server_tls_key or server_tls_certificate", "server_tls")
        files = [f.strip() for f in legacy.split(",")]
        if len(files) > 2 or not all(files):
            raise context.error(f"\"{legacy}\" is neither a boolean nor a certificate file "
                                "(or key file,certificate file)", "server_tls")
        values["server_tls"] = True
        values["server_tls_certificate"] = files[-1]
        if len(files) == 2:
            values["server_tls_key"] = files[0]
    for side in ("server", "client"):
        if f"{side}_tls_key" in values and f"{side}_tls_certificate" not in values:
            raise context.error(f"needs {side}_tls_certificate too (the certificate chain "
                                "that goes with the key)", f"{side}_tls_key")
    if values.get("server_tls") is True and "server_tls_certificate" not in values:
        raise context.error("needs server_tls_certificate (a PEM file with the key and "
                            "certificate chain, or the chain with server_tls_key)", "server_tls")
    return values
