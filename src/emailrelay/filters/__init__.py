"""Filters (``--filter``, ``--client-filter``): programs, network services and built-ins
that look at, change, reject or deliver each message.

* :mod:`.spec` parses the option values (comma chains, ``exit:``, ``net:``, ``spam:``,
  ``spam-edit:``, ``deliver:``, ``copy:``, ``split:``, ``mx:``, ``msgid:``, programs);
* :mod:`.result` holds the outcome of a filter and E-MailRelay's exit-code table;
* :mod:`.chain` builds the filters of one option and runs them in order;
* :mod:`.server` plugs the chain into the SMTP server, :mod:`.client` offers it to the
  forwarding agent.
"""
