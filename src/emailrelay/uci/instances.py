"""``--uci <file>`` and ``--print-command-line``: UCI sections as relay instances.

Each enabled section becomes one instance of this process, named after the section, with
the options its command line gives (as if each had been started on its own, the way
OpenWrt's init script starts one process per section).  Process-wide options (logging,
``--user``, ``--pid-file``...) are taken from the first enabled section that gives them
(so ``--as-server`` in any section turns logging on), and the command line next to
``--uci`` may add or override them.
"""

from __future__ import annotations

import shlex

from emailrelay.options.parser import CommandLine, Settings, UsageError, parse
from emailrelay.options.table import BY_NAME
from emailrelay.process.daemon import program_name
from emailrelay.uci import mapping
from emailrelay.uci.parser import read

OWN_OPTIONS = ("uci", "print-command-line")


def uci_path(cl: CommandLine) -> str:
    path = cl.process.value("uci")
    if path is None:
        raise UsageError("--print-command-line needs --uci <file>")
    return path


def command_lines(cl: CommandLine) -> str:
    """What ``--print-command-line`` shows: each section and its command line."""
    path = uci_path(cl)
    out = []
    for command in mapping.commands(read(path)):
        if not command.enabled:
            out.append(f"# {command.section.label} (disabled)")
            continue
        _settings(path, command, read_config=False)  # refuse what E-MailRelay would refuse
        out += [f"# {command.section.label}", shlex.join([program_name(), *command.arguments])]
    return "".join(line + "\n" for line in out)


def instances(cl: CommandLine) -> CommandLine:
    """The command line to run: one instance per enabled section."""
    path = uci_path(cl)
    if cl.config_file is not None:
        raise UsageError(f"a configuration file (\"{cl.config_file}\") cannot be used with "
                         f"--uci: put its options in a section of {path}")
    if len(cl.instances) > 1 or cl.process.name:
        raise UsageError("named instances (--<name>-...) cannot be used with --uci: each "
                         "enabled section is an instance")
    added = {n: v for n, v in cl.process.given.items() if n not in OWN_OPTIONS}
    for name in added:
        if not BY_NAME[name].process_wide:
            raise UsageError(f"--{name} cannot be used with --uci: set it in a section of "
                             f"{path} (only process-wide options can be added)")
    enabled = [c for c in mapping.commands(read(path)) if c.enabled]
    if not enabled:
        raise UsageError(f"no enabled \"{mapping.SECTION_TYPE}\" section in {path}")
    result: list[Settings] = []
    for command in enabled:
        settings = _settings(path, command, read_config=True)
        settings.name = command.section.label
        if result:
            # The first section that gives a process-wide option decides it.
            for name, value in settings.given.items():
                if BY_NAME[name].process_wide:
                    result[0].given.setdefault(name, value)
            settings.given = {n: v for n, v in settings.given.items()
                              if not BY_NAME[n].process_wide}
        result.append(settings)
    first = result[0].given
    for name, value in added.items():
        current = first.get(name)
        first[name] = current + value if isinstance(current, list) and isinstance(
            value, list) else value
    return CommandLine(result)


def _settings(path: str, command: mapping.SectionCommand, *, read_config: bool) -> Settings:
    where = f"{path}: section \"{command.section.label}\""
    try:
        parsed = parse(command.arguments, read_config=read_config)
    except UsageError as e:
        raise UsageError(f"{where}: {e}", parse_error=e.parse_error) from None
    if len(parsed.instances) > 1 or parsed.process.name:
        raise UsageError(f"{where}: named instances (--<name>-...) cannot be used in a section")
    return parsed.process
