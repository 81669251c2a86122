"""The option table: the single source of truth for every option.

The command line, configuration files, multi-instance prefixes, ``--help`` and
the OpenWrt UCI mapping are all derived from :data:`OPTIONS`.  The first part
holds E-MailRelay 2.6's options (same long names, short letters and value
counts); the second holds the options this implementation adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Arity(Enum):
    FLAG = "zero"  # no value
    OPTIONAL = "zero_or_one"  # --name or --name=value
    ONE = "one"  # exactly one value; given twice is an error
    MANY = "many"  # repeatable; values accumulate in order


@dataclass(frozen=True)
class Option:
    name: str
    short: str | None
    arity: Arity
    metavar: str
    areas: tuple[str, ...]
    help: str
    default: str | None = None
    process_wide: bool = False  # applies to the whole process, not one instance
    pending: str | None = None  # feature not built yet: the option is refused
    ignored: str | None = None  # accepted but has no effect here, with the reason
    extension: bool = False  # ours, not E-MailRelay's
    path: bool = False  # a file or directory, made absolute for a daemon (which runs in /)

    @property
    def takes_value(self) -> bool:
        return self.arity in (Arity.ONE, Arity.MANY)


F, O1, ONE, MANY = Arity.FLAG, Arity.OPTIONAL, Arity.ONE, Arity.MANY


def _o(name: str, short: str | None, arity: Arity, metavar: str, areas: str, help: str,
       **kw: object) -> Option:
    return Option(name, short, arity, metavar, tuple(areas.split(",")), help, **kw)  # type: ignore[arg-type]


OPTIONS: tuple[Option, ...] = (
    # -- basic ---------------------------------------------------------------------------
    _o("as-client", "q", ONE, "host:port", "basic,smtpclient",
       "Forward the spooled messages to the given server and then exit. Same as --log "
       "--no-syslog --no-daemon --dont-serve --forward --forward-to."),
    _o("as-server", "d", F, "", "basic,smtpserver",
       "Run as a background storage daemon that accepts and spools messages. Same as "
       "--log --close-stderr."),
    _o("as-proxy", "y", ONE, "host:port", "basic",
       "Run as a store-and-forward daemon that forwards each client's messages when it "
       "disconnects. Same as --log --close-stderr --forward-on-disconnect --forward-to."),
    _o("spool-dir", "s", ONE, "dir", "basic",
       "The directory that holds messages received but not yet forwarded.",
       default="/var/spool/emailrelay", path=True),
    _o("help", "h", F, "", "basic,info",
       "Show this help and exit; with --verbose show every option.", process_wide=True),
    _o("version", "V", F, "", "basic,info,logging",
       "Show the version and exit; with --verbose list the built-in features.",
       process_wide=True),
    _o("verbose", "v", F, "", "logging,basic",
       "More detailed logging with --log, and full help with --help.", process_wide=True),
    # -- SMTP client -----------------------------------------------------------------------
    _o("client-smtp-config", "c", MANY, "config", "smtpclient",
       "Adjust the SMTP client with a comma-separated list of features, such as "
       "-pipelining, smtputf8strict, eightbitstrict and binarymimestrict."),
    _o("forward", "f", F, "", "smtpclient",
       "Forward the spooled messages once at start-up."),
    _o("forward-on-disconnect", "1", F, "", "smtpclient",
       "Forward the spooled messages each time an SMTP client disconnects."),
    _o("forward-to", "o", ONE, "host:port", "smtpclient",
       "The address of the SMTP server (smarthost) that messages are forwarded to."),
    _o("forward-to-some", None, F, "", "smtpclient",
       "Forward a message to the recipients the server accepts even when it rejects "
       "others; the rejected ones stay in a failed message."),
    _o("forward-to-all", None, F, "", "smtpclient",
       "Fail a message unless the server accepts every recipient (the default)."),
    _o("poll", "O", ONE, "period", "smtpclient",
       "Forward the spooled messages every given number of seconds."),
    _o("client-filter", "Y", MANY, "program", "smtpclient,filter",
       "Run a filter program (or net:, spam:, spam-edit:, exit: or a built-in filter) on "
       "each message just before it is forwarded."),
    _o("client-interface", "6", ONE, "ip-address", "smtpclient",
       "The local address to bind for outgoing connections; 0.0.0.0 or :: restricts "
       "forwarding to IPv4 or IPv6."),
    _o("connection-timeout", "U", ONE, "time", "smtpclient",
       "Seconds allowed for connecting to the remote server.", default="40"),
    _o("idle-timeout", None, ONE, "time", "smtpclient",
       "Seconds of silence allowed from remote SMTP and POP clients.", default="60"),
    _o("response-timeout", "T", ONE, "time", "smtpclient",
       "Seconds allowed for each response from the remote server.", default="60"),
    _o("prompt-timeout", "w", ONE, "time", "smtpserver",
       "Seconds to wait for the remote server's greeting before going ahead without it.",
       default="20"),
    _o("immediate", "m", F, "", "smtpclient,smtpserver",
       "Forward each message as it is received, before it is acknowledged."),
    # -- SMTP server -------------------------------------------------------------------------
    _o("port", "p", ONE, "port", "smtpserver",
       "The port that the SMTP server listens on.", default="25"),
    _o("remote-clients", "r", F, "", "smtpserver",
       "Accept connections from any address, not only loopback and private networks."),
    _o("address-verifier", None, ONE, "program", "smtpserver",
       "Check each recipient address with a program, a net: server or the built-in "
       "account: verifier."),
    _o("anonymous", "A", O1, "scope", "smtpserver",
       "Say less about this server: no VRFY, a terse greeting, no Received line, no AUTH= "
       "when forwarding. Limit it with a list of vrfy, server, content and client."),
    _o("delivery-dir", "s", ONE, "dir", "smtpserver",
       "The base directory for local mailboxes used by the deliver: filter (default: the "
       "spool directory).", path=True),
    _o("dnsbl", None, MANY, "config", "smtpserver",
       "Check clients against DNS block lists: servers, then optional threshold, timeout "
       "in milliseconds and DNS server address."),
    _o("domain", "D", ONE, "fqdn", "smtpserver",
       "The name used in greetings, EHLO, Received lines and authentication challenges "
       "(default: this host's canonical name)."),
    _o("filter", "z", MANY, "program", "smtpserver,filter",
       "Run a filter program (or net:, spam:, spam-edit:, exit: or a built-in filter) on "
       "each message as it is stored; exit codes 1 to 99 reject it."),
    _o("filter-timeout", "W", ONE, "time", "smtpserver,filter",
       "Seconds a filter may run before it is stopped and the message fails.", default="60"),
    _o("interface", "I", MANY, "ip-address-list", "smtpserver",
       "Addresses, interface names, fd#N inherited sockets or unix-domain paths to listen "
       "on, comma-separated, optionally prefixed with smtp=, pop= or admin=."),
    _o("server-smtp-config", "Z", MANY, "config", "smtpserver",
       "Adjust the SMTP server with a comma-separated list of features, such as "
       "+chunking, +smtputf8, smtputf8strict, -pipelining, nostrictparsing."),
    _o("size", "M", ONE, "bytes", "smtpserver",
       "The largest message accepted over SMTP, in bytes (0 means no limit)."),
    # -- POP ---------------------------------------------------------------------------------
    _o("pop", "B", F, "", "pop,smtpserver",
       "Run the POP3 server, giving mail readers access to the spooled messages."),
    _o("pop-port", "E", ONE, "port", "pop,smtpserver",
       "The port that the POP3 server listens on.", default="110"),
    _o("pop-auth", "F", ONE, "file", "auth,pop,smtpserver",
       "The secrets file with the POP3 accounts (server lines).", path=True),
    _o("pop-no-delete", "G", F, "", "pop,smtpserver",
       "Let POP3 DELE appear to succeed without deleting anything."),
    _o("pop-by-name", "J", F, "", "pop,smtpserver",
       "Serve each POP3 user the spool subdirectory named after them (created for each "
       "account)."),
    # -- admin -------------------------------------------------------------------------------
    _o("admin", "a", ONE, "port", "admin",
       "Run the administration interface on the given port."),
    _o("admin-terminate", "Q", F, "", "admin,process",
       "Allow the administration interface's terminate command."),
    # -- authentication ----------------------------------------------------------------------
    _o("client-auth", "C", ONE, "file", "auth,smtpclient",
       "Log in to the remote server with the client account in this secrets file, or "
       "plain:<base64-user>:<base64-password>.", path=True),
    _o("client-auth-config", None, ONE, "config", "auth,smtpclient",
       "Choose client authentication mechanisms: m: preferred, x: avoided, a: and d: the "
       "same once TLS is on, separated by semicolons."),
    _o("server-auth", "S", ONE, "file", "auth,smtpserver",
       "Require SMTP clients to log in with an account from this secrets file.", path=True),
    _o("server-auth-config", None, ONE, "config", "auth,smtpserver",
       "Choose server authentication mechanisms: m: allowed, x: denied, a: and d: the same "
       "once TLS is on, separated by semicolons."),
    # -- TLS ---------------------------------------------------------------------------------
    _o("client-tls", "j", F, "", "tls,smtpclient",
       "Use STARTTLS on outgoing connections when the server offers it."),
    _o("client-tls-connection", "b", F, "", "tls,smtpclient",
       "Make outgoing connections with TLS from the start (SMTPS, usually port 465)."),
    _o("client-tls-certificate", None, MANY, "pem-file", "tls,smtpclient",
       "The client's private key and certificate chain in one PEM file, or the option "
       "twice: key file then certificate file."),
    _o("client-tls-verify", None, ONE, "ca-list", "tls,smtpclient",
       "Verify the remote server's certificate against these CA certificates (a file, a "
       "directory, or <default>)."),
    _o("client-tls-verify-name", None, ONE, "cname", "tls,smtpclient",
       "The name the remote server's certificate must carry."),
    _o("client-tls-server-name", None, ONE, "hostname", "tls,smtpclient",
       "The server name sent in the TLS handshake (SNI)."),
    _o("client-tls-required", None, F, "", "tls,smtpclient",
       "Refuse to forward without TLS: fail the connection when STARTTLS is not offered."),
    _o("server-tls", "K", F, "", "tls,smtpserver",
       "Offer STARTTLS to SMTP clients and STLS to POP3 clients."),
    _o("server-tls-connection", None, F, "", "tls,smtpserver",
       "Expect TLS from the start on incoming SMTP and POP3 connections (SMTPS, POP3S)."),
    _o("server-tls-certificate", None, MANY, "pem-file", "tls,smtpserver",
       "The server's private key and certificate chain in one PEM file, or the option "
       "twice: key file then certificate file."),
    _o("server-tls-required", None, F, "", "tls,smtpserver",
       "Require TLS before SMTP MAIL or AUTH and before POP3 login."),
    _o("server-tls-verify", None, ONE, "ca-list", "tls,smtpserver",
       "Require client certificates signed by these CA certificates (a file, a directory, "
       "or <default>)."),
    _o("tls-config", "9", MANY, "options", "tls",
       "TLS settings as comma-separated keywords: tlsv1.2 sets a minimum protocol version, "
       "-tlsv1.3 a maximum."),
    # -- process -----------------------------------------------------------------------------
    _o("dont-serve", "x", F, "", "process",
       "Do not listen for any connections; exit once the start-up forwarding is done."),
    _o("no-smtp", "X", F, "", "process", "Do not listen for SMTP connections."),
    _o("no-daemon", "t", F, "", "process",
       "Stay in the foreground instead of becoming a background daemon.", process_wide=True),
    _o("pid-file", "i", MANY, "path", "process",
       "Write the process id to this file once listening.", process_wide=True, path=True),
    _o("user", "u", ONE, "username", "process",
       "The unprivileged user to run as when started as root (root disables switching).",
       default="daemon", process_wide=True),
    _o("hidden", "H", F, "", "process",
       "Windows only: hide the window. Accepted and ignored here.", process_wide=True,
       ignored="a Windows-only option"),
    _o("show", None, ONE, "style", "process",
       "Windows only: the window style. Accepted and ignored here.", process_wide=True,
       ignored="a Windows-only option"),
    _o("localedir", None, ONE, "dir", "process",
       "The message catalogue directory. Accepted and ignored: messages are in English.",
       process_wide=True, ignored="messages are not translated"),
    # -- logging -----------------------------------------------------------------------------
    _o("log", "l", F, "", "logging",
       "Log to standard error and to syslog.", process_wide=True),
    _o("debug", "g", F, "", "logging",
       "Log debugging detail (may show message content and passwords).", process_wide=True),
    _o("log-time", "L", F, "", "logging",
       "Add a timestamp to each log line (same as --log-format=time).", process_wide=True),
    _o("log-address", None, F, "", "logging",
       "Add the remote client's address to log lines (same as --log-format=address).",
       process_wide=True),
    _o("log-format", None, MANY, "", "logging",
       "Extra log fields, comma-separated: time, unit, address, port, msgid.",
       process_wide=True),
    _o("log-file", "N", ONE, "file", "logging",
       "Log to this file instead of standard error; %d becomes the date (daily files) and "
       "%h the hour.", process_wide=True, path=True),
    _o("syslog", "k", O1, "facility", "logging",
       "Log to syslog even with --no-syslog, optionally with a facility such as mail or "
       "local0.", process_wide=True),
    _o("no-syslog", "n", F, "", "logging", "Do not log to syslog.", process_wide=True),
    _o("close-stderr", "e", F, "", "logging,process",
       "Close standard error soon after start-up.", process_wide=True),
    # -- ours: forwarding ----------------------------------------------------------------------
    _o("forward-connections", None, ONE, "count", "smtpclient",
       "The most connections opened in parallel to one smarthost (default 2).",
       default="2", extension=True),
    _o("retry-delay", None, ONE, "time", "smtpclient",
       "Seconds before a message that failed temporarily is tried again; the delay "
       "doubles with each failure (default 60).", default="60", extension=True),
    _o("retry-max-delay", None, ONE, "time", "smtpclient",
       "The longest delay between retries, in seconds (default 3600).", default="3600",
       extension=True),
    _o("retry-max-age", None, ONE, "time", "smtpclient",
       "Seconds after which a message that still cannot be forwarded is failed (.bad); "
       "0, the default, keeps trying for ever.", default="0", extension=True),
    # -- ours: OpenWrt --------------------------------------------------------------------------
    _o("uci", None, ONE, "file", "process",
       "Run every enabled section of an OpenWrt UCI file (/etc/config/emailrelay) as an "
       "instance of this process; only process-wide options may be added.",
       process_wide=True, extension=True),
    _o("print-command-line", None, F, "", "process",
       "With --uci: print the E-MailRelay command line each section means, then exit.",
       process_wide=True, extension=True),
    # -- ours: connection policy, operations -----------------------------------------------
    _o("max-connections", None, ONE, "count", "smtpserver",
       "The most SMTP (and POP) connections served at once; more get a 421 reply "
       "(0: no limit).", default="200", process_wide=True, extension=True),
    _o("max-client-connections", None, ONE, "count", "smtpserver",
       "The most connections served at once from one client address (0: no limit).",
       default="50", process_wide=True, extension=True),
    _o("shutdown-grace", None, ONE, "time", "process",
       "Seconds that sessions in progress get to finish after SIGTERM or SIGINT.",
       default="10", process_wide=True, extension=True),
    _o("workers", None, ONE, "count", "process",
       "Processes that serve SMTP on the same listening sockets, to use more than one "
       "core; POP3, admin, metrics and forwarding stay in the main process (default 1).",
       default="1", process_wide=True, extension=True),
    _o("metrics-port", None, ONE, "port", "metrics",
       "Serve Prometheus metrics at /metrics and a JSON health document at /health on "
       "this HTTP port (off by default).", process_wide=True, extension=True),
    _o("metrics-address", None, ONE, "ip-address", "metrics",
       "The address the metrics port listens on.", default="127.0.0.1", process_wide=True,
       extension=True),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

# 2.6 gives -s to both spool-dir and delivery-dir; -s means --spool-dir.
BY_SHORT: dict[str, Option] = {}
for _opt in OPTIONS:
    if _opt.short and _opt.short not in BY_SHORT:
        BY_SHORT[_opt.short] = _opt

# Options that stand for several others.
IMPLIES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "as-client": (("log", None), ("no-syslog", None), ("no-daemon", None),
                  ("dont-serve", None), ("forward", None), ("forward-to", "$")),
    "as-proxy": (("log", None), ("close-stderr", None), ("forward-on-disconnect", None),
                 ("forward-to", "$")),
    "as-server": (("log", None), ("close-stderr", None)),
}

AREA_TITLES: dict[str, str] = {
    "basic": "Basic options",
    "smtpserver": "SMTP server options",
    "smtpclient": "SMTP client options",
    "pop": "POP server options",
    "admin": "Admin server options",
    "metrics": "Metrics and health options",
    "auth": "Authentication options",
    "tls": "TLS options",
    "filter": "Filter options",
    "process": "Process options",
    "logging": "Logging options",
}


@dataclass(frozen=True)
class UciOption:
    """An option of OpenWrt's ``/etc/config/emailrelay`` and the option above it sets.

    The value type follows that option's arity: a flag (or an optional value) is a UCI
    boolean, a repeatable option a UCI list, anything else one value; ``kind`` overrides
    it where OpenWrt differs.  Entries without ``option`` (``enabled``, ``mode``,
    ``smarthost``, ``extra_cmdline``) are read by :mod:`emailrelay.uci.mapping` itself.
    """

    name: str
    option: str | None = None
    kind: str | None = None  # "bool", "single" or "list"
    prefix: str = ""  # put before each value, as in --interface smtp=<value>

    @property
    def type(self) -> str:
        if self.kind is not None:
            return self.kind
        assert self.option is not None
        arity = BY_NAME[self.option].arity
        return {F: "bool", O1: "bool", MANY: "list"}.get(arity, "single")


# Every option in OpenWrt's option table, in the order its init script turns them into
# arguments: the lists first, then --as-<mode> and the smarthost, then the rest.
UCI_OPTIONS: tuple[UciOption, ...] = (
    UciOption("enabled", kind="bool"),
    UciOption("mode", kind="single"),
    UciOption("smarthost", kind="single"),
    UciOption("extra_cmdline", kind="single"),
    UciOption("dnsbl", "dnsbl"),
    UciOption("filter", "filter"),
    UciOption("smtp_server_interface", "interface", prefix="smtp="),
    UciOption("client_filter", "client-filter"),
    UciOption("pop_server_interface", "interface", prefix="pop="),
    UciOption("port", "port"),
    UciOption("remote_clients", "remote-clients"),
    UciOption("server_tls", "server-tls"),
    UciOption("server_tls_required", "server-tls-required"),
    UciOption("server_tls_key", "server-tls-certificate", kind="single"),  # key file first
    UciOption("server_tls_certificate", "server-tls-certificate", kind="single"),
    UciOption("server_tls_verify", "server-tls-verify"),
    UciOption("server_auth", "server-auth"),
    UciOption("client_tls", "client-tls"),
    UciOption("client_tls_required", "client-tls-required"),
    UciOption("client_tls_key", "client-tls-certificate", kind="single"),
    UciOption("client_tls_certificate", "client-tls-certificate", kind="single"),
    UciOption("client_tls_verify", "client-tls-verify"),
    UciOption("client_auth", "client-auth"),
    UciOption("smtp_client_interface", "client-interface"),
    UciOption("address_verifier", "address-verifier"),
    UciOption("domain", "domain"),
    UciOption("anonymous", "anonymous"),
    UciOption("pop", "pop"),
    UciOption("pop_port", "pop-port"),
    UciOption("pop_auth", "pop-auth"),
    UciOption("pop_by_name", "pop-by-name"),
    UciOption("spool_dir", "spool-dir"),
    UciOption("delivery_dir", "delivery-dir"),
)

UCI_BY_NAME: dict[str, UciOption] = {u.name: u for u in UCI_OPTIONS}
