"""Connection policy: who may connect to the servers, and how many at once.

* :mod:`~emailrelay.policy.dnsbl` -- ``--dnsbl``: DNS block lists (RFC 5782).
* :mod:`~emailrelay.policy.connections` -- the registry of listening sockets and open
  connections (the admin ``status`` report) with the concurrent-connection limits.
"""
