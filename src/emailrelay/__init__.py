"""emailrelay for Python: a store-and-forward SMTP relay, compatible with E-MailRelay 2.6."""

__version__ = "2.6.0.1"
COMPATIBLE_WITH = "2.6"
