"""Beyond E-MailRelay: Prometheus metrics and a JSON health document over HTTP.

* :mod:`~emailrelay.metrics.registry` -- the metrics (``prometheus-client``).
* :mod:`~emailrelay.metrics.health` -- the health/status document.
* :mod:`~emailrelay.metrics.http` -- the small HTTP endpoint serving both
  (``--metrics-port``, loopback only unless ``--metrics-address`` says otherwise).
"""
