"""The admin interface (``--admin``): E-MailRelay's line-based control port.

* :mod:`~emailrelay.admin.core` -- the commands and reply texts, without I/O.
* :mod:`~emailrelay.admin.server` -- the asyncio adapter, one task per connection.
* :mod:`~emailrelay.admin.backend` -- what the commands act on: one relay instance.
"""
