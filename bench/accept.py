"""Accepting mail into the spool: many connections, connection per message, one huge message.

Our relay (durable: every 250 after fsync) beside aiosmtpd 1.4.6 writing the same files
without fsync, driven by the same pipelining load client.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

from bench.common import (
    Program,
    Result,
    emailrelay_argv,
    free_port,
    load,
    make_message,
    tree_peak_rss_kb,
)

CONNECTIONS = 8
PER_CONNECTION = 250
SIZE = 10 * 1024

AIOSMTPD_SERVER = textwrap.dedent('''
    import asyncio, os, sys, time, itertools
    from aiosmtpd.controller import Controller
    spool, port = sys.argv[1], int(sys.argv[2])
    seq = itertools.count(1)
    class Handler:
        async def handle_DATA(self, server, session, envelope):
            name = os.path.join(spool, f"emailrelay.{os.getpid()}.{int(time.time())}.{next(seq)}")
            with open(name + ".content", "wb") as f:
                f.write(envelope.original_content)
            with open(name + ".envelope", "w") as f:
                f.write("X-MailRelay-From: " + envelope.mail_from + "\\r\\n")
            return "250 message processed"
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()
''')


def _run(name: str, argv: list[str], port: int, work: Path, connections: int, per_client: int,
         size: int, per_connection: bool = False, note: str = "") -> Result:
    program = Program(argv, port, work / f"{name.replace(' ', '_')}.log")
    try:
        sent, seconds, latencies = asyncio.run(load(port, connections, per_client,
                                                    make_message(size), per_connection))
        return Result(name, sent, seconds, latencies, tree_peak_rss_kb(program.process.pid),
                      note)
    finally:
        program.stop()


def run(work: Path) -> list[Result]:
    results = []
    total = CONNECTIONS * PER_CONNECTION
    spool = work / "accept-spool"
    spool.mkdir()
    port = free_port()
    results.append(_run(f"accept {CONNECTIONS} conns 10KB", emailrelay_argv(port, spool), port,
                        work, CONNECTIONS, PER_CONNECTION, SIZE, note="durable (fsync)"))
    shutil.rmtree(spool)
    spool.mkdir()
    port = free_port()
    results.append(_run("accept conn-per-message 10KB", emailrelay_argv(port, spool), port,
                        work, CONNECTIONS, PER_CONNECTION // 4, SIZE, per_connection=True,
                        note="durable (fsync)"))
    shutil.rmtree(spool)
    spool.mkdir()
    port = free_port()
    results.append(_run("accept one 100MB message", emailrelay_argv(port, spool), port, work,
                        1, 1, 100 * 1024 * 1024, note="durable (fsync)"))
    shutil.rmtree(spool)
    spool.mkdir()
    port = free_port()
    script = work / "aiosmtpd_server.py"
    script.write_text(AIOSMTPD_SERVER)
    results.append(_run(f"aiosmtpd 1.4.6 {CONNECTIONS} conns 10KB",
                        [sys.executable, str(script), str(spool), str(port)], port, work,
                        CONNECTIONS, PER_CONNECTION, SIZE, note=f"no fsync, {total} msgs"))
    return results


if __name__ == "__main__":
    from bench.common import table
    with tempfile.TemporaryDirectory() as tmp:
        print(table(run(Path(tmp))))
