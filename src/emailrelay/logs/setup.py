"""Logging in E-MailRelay's shape.

A line reads ``emailrelay: [<time>: ]<level>: [<context>]<text>`` where the time
(``--log-time`` or ``--log-format=time``) is local ``YYYYMMDD.HHMMSS.mmm`` and the
context (``--log-address``, ``--log-format=address,port``) is ``<ip>; ``,
``<ip>;<port>: `` or ``<port>: `` for lines about one connection.  Plain ``--log``
shows the summary (INFO); ``--verbose`` adds the protocol trace (VERBOSE);
``--debug`` everything.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass, field

VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

_LEVEL_WORDS = {logging.DEBUG: "debug", VERBOSE: "info", logging.INFO: "info",
                logging.WARNING: "warning", logging.ERROR: "error", logging.CRITICAL: "fatal"}

# The remote address of the connection a task serves: (ip, port) or None.
peer_context: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "peer_context", default=None)
# The instance (unit) name for --log-format=unit.
unit_context: contextvars.ContextVar[str] = contextvars.ContextVar("unit_context", default="")

log = logging.getLogger("emailrelay")


def verbose(message: str, *args: object) -> None:
    log.log(VERBOSE, message, *args)


@dataclass
class LogSettings:
    enabled: bool = False  # --log
    verbose: bool = False
    debug: bool = False
    fields: set[str] = field(default_factory=set)  # time, unit, address, port, msgid
    log_file: str | None = None
    syslog: bool = False
    syslog_facility: str = "mail"
    program: str = "emailrelay"
    quiet_stderr: bool = False  # a daemon about to close stderr: only warnings there


class RelayFormatter(logging.Formatter):
    def __init__(self, settings: LogSettings) -> None:
        super().__init__()
        self.settings = settings

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{self.settings.program}: "]
        fields = self.settings.fields
        if "time" in fields:
            t = record.created
            parts.append(time.strftime("%Y%m%d.%H%M%S", time.localtime(t))
                         + f".{int((t % 1) * 1000):03d}: ")
        parts.append(_LEVEL_WORDS.get(record.levelno, "info") + ": ")
        if "unit" in fields:
            unit = unit_context.get()
            if unit:
                parts.append(f"[{unit}] ")
        peer = peer_context.get()
        if peer is not None:
            with_address, with_port = "address" in fields, "port" in fields
            if with_address and with_port:
                parts.append(f"{peer[0]};{peer[1]}: ")
            elif with_address:
                parts.append(f"{peer[0]}; ")
            elif with_port:
                parts.append(f"{peer[1]}: ")
        text = record.getMessage().replace("\x1b", ".")
        if record.exc_info and self.settings.debug:
            text += "\n" + self.formatException(record.exc_info)
        parts.append(text)
        return "".join(parts)


class DatedFileHandler(logging.Handler):
    """Appends to a log file whose name may contain %d (YYYYMMDD) and %h (HH)."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        self._path = ""
        self._stream = None
        self._open(time.time())

    def _name_for(self, t: float) -> str:
        now = time.localtime(t)
        return self.pattern.replace("%d", time.strftime("%Y%m%d", now)).replace(
            "%h", time.strftime("%H", now))

    def _open(self, t: float) -> None:
        path = self._name_for(t)
        stream = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        old, self._stream, self._path = self._stream, stream, path
        if old is not None:
            old.close()

    def reopen(self) -> None:
        """For SIGHUP: start a new file after log rotation."""
        self.acquire()
        try:
            self._open(time.time())
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._name_for(record.created) != self._path:
                self._open(record.created)
            assert self._stream is not None
            self._stream.write(self.format(record) + "\n")
            self._stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


_fields: set[str] = set()  # --log-format, as configured


def logged_field(name: str) -> bool:
    """Whether ``--log-format`` asks for a field that the code logging adds itself
    (``msgid``: the content's Message-ID in forwarding lines, as E-MailRelay's client)."""
    return name in _fields


def configure(settings: LogSettings) -> None:
    """Install handlers on the ``emailrelay`` logger (replacing earlier ones)."""
    _fields.clear()
    _fields.update(settings.fields)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = False
    if settings.debug:
        level = logging.DEBUG
    elif settings.verbose:
        level = VERBOSE
    elif settings.enabled:
        level = logging.INFO
    else:
        level = logging.WARNING
    log.setLevel(level)
    formatter = RelayFormatter(settings)
    if settings.log_file:
        main: logging.Handler = DatedFileHandler(settings.log_file)
    else:
        main = logging.StreamHandler(sys.stderr)
        if settings.quiet_stderr:
            main.setLevel(logging.WARNING)
    main.setFormatter(formatter)
    log.addHandler(main)
    if settings.syslog and settings.enabled:
        handler = _syslog_handler(settings)
        if handler is not None:
            log.addHandler(handler)


SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog")


def _syslog_handler(settings: LogSettings) -> logging.Handler | None:
    """Syslog lines as E-MailRelay sends them: the whole log line, program name included
    (``emailrelay[<pid>]: emailrelay: warning: ...``), which its fail2ban filter expects."""
    facility = logging.handlers.SysLogHandler.facility_names.get(
        settings.syslog_facility, logging.handlers.SysLogHandler.LOG_MAIL)
    for address in SYSLOG_SOCKETS:
        if os.path.exists(address):
            try:
                handler = logging.handlers.SysLogHandler(address=address, facility=facility)
            except OSError:
                continue
            handler.ident = f"{settings.program}[{os.getpid()}]: "
            handler.setFormatter(RelayFormatter(settings))
            return handler
    return None


def startup_error(text: str, program: str = "emailrelay") -> None:
    """A failure that stops the program at start-up.

    It goes to standard error as E-MailRelay prints it (``emailrelay: error: <text>``,
    whatever --log-file says), and to the log file and syslog as well.
    """
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (text,), None)
    for handler in log.handlers:
        if not (isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr):
            handler.handle(record)
    sys.stderr.write(f"{program}: error: {text}\n")
    sys.stderr.flush()


def reopen_files() -> None:
    for handler in log.handlers:
        if isinstance(handler, DatedFileHandler):
            handler.reopen()


def close_stderr() -> None:
    """Point file descriptor 2 at /dev/null (``--close-stderr``)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
