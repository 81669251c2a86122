"""``emailrelay-submit``: put a message straight into the spool directory.

``options`` is its command line, ``headers`` the RFC 5322 header section it reads and
edits, ``addresses`` the envelope addresses taken from headers, and ``compose`` turns
all that into spool messages through :mod:`emailrelay.spool.store`.
"""
