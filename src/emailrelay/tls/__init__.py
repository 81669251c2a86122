"""TLS in both directions: SSL contexts from the options, certificate and key files,
``--tls-config``, the STARTTLS/STLS upgrade of a live connection, and reload on SIGHUP."""
