"""aiosmtpd as the benchmarks' comparison: it writes the same two files per message as
our relay (content and envelope) but never fsyncs.

``python -m bench.aiosmtpd_server SPOOL PORT``
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class SpoolingHandler:
    def __init__(self, spool: str) -> None:
        self.spool = spool
        self.sequence = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stem = os.path.join(self.spool, f"emailrelay.{os.getpid()}.{int(time.time())}."
                                        f"{next(self.sequence)}")
        with open(stem + ".content", "wb") as f:
            f.write(envelope.original_content or b"")
        with open(stem + ".envelope", "w") as f:
            f.write(f"X-MailRelay-From: {envelope.mail_from}\r\n"
                    + "".join(f"X-MailRelay-To-Remote: {to}\r\n" for to in envelope.rcpt_tos))
        return "250 message processed"


def main(spool: str, port: int) -> None:
    os.makedirs(spool, exist_ok=True)
    # No size limit: the scaling curve sends up to 10 MB.
    controller = Controller(SpoolingHandler(spool), hostname="127.0.0.1", port=port,
                            data_size_limit=0)
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # the server's thread inherits this
    controller.start()
    signal.sigwait(stop)
    controller.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
