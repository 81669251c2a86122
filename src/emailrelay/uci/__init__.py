"""OpenWrt support: ``emailrelay --uci /etc/config/emailrelay``.

``parser`` reads UCI files, ``mapping`` turns each ``emailrelay`` section into the
E-MailRelay command line OpenWrt's init script would run, and ``instances`` makes the
enabled sections the instances of one process (or prints their command lines).
"""
