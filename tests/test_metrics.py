"""Metrics and health over HTTP from the real relay, parsed with prometheus_client."""

from __future__ import annotations

import http.client
import json
import shutil
import smtplib
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.certs import Pki
from tests.support.fakesmtp import FakeSmtpServer, Script
from tests.support.helpers import script
from tests.support.relay import free_port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/plain; version=")
    text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


Sample = tuple[str, tuple[tuple[str, str], ...]]


def wait_for_sample(port: int, key: Sample, value: float, timeout: float = 10.0
                    ) -> dict[Sample, float]:
    """Scrape until ``key`` has ``value``; the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if samples.get(key) == value:
            return samples
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} is {samples.get(key)}, never {value}")
        time.sleep(0.05)


@pytest.fixture
def relay(start_relay):
    metrics_port = free_port()
    relay = start_relay("--metrics-port", str(metrics_port), "--size", "5000")
    relay.metrics_port = metrics_port
    relay.wait_for_log(f"metrics server on 127.0.0.1:{metrics_port}")
    return relay


def test_counters_follow_what_happens(relay) -> None:
    before = scrape(relay.metrics_port)
    assert before[("emailrelay_messages_received_total", ())] == 0
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        for _ in range(3):
            smtp.sendmail("a@example.com", ["b@example.net"], "Subject: x\r\n\r\nhi\r\n")
        with pytest.raises(smtplib.SMTPSenderRefused):
            smtp.sendmail("a@example.com", ["b@example.net"], "x" * 6000)
    time.sleep(0.2)
    after = scrape(relay.metrics_port)
    assert after[("emailrelay_messages_received_total", ())] == 3
    assert after[("emailrelay_rejected_total", (("reason", "size"),))] == 1
    assert after[("emailrelay_queue_messages", (("state", "ready"), ("unit", "")))] == 3
    assert after[("emailrelay_queue_messages", (("state", "failed"), ("unit", "")))] == 0
    assert 0 <= after[("emailrelay_queue_oldest_message_age_seconds", (("unit", ""),))] < 60
    # the probe connection of the test helper, and ours
    assert after[("emailrelay_sessions_total", (("kind", "smtp"), ("tls", "no")))] >= 2
    assert after[("emailrelay_connections", (("kind", "smtp"),))] == 0
    assert ("emailrelay_forward_duration_seconds_count", ()) in after
    assert ("process_resident_memory_bytes", ()) in after
    info = [k for k in after if k[0] == "emailrelay_info"]
    assert info and dict(info[0][1])["compatible_with"] == "E-MailRelay 2.6"


def test_rejections_are_counted_by_reason(start_relay, tmp_path) -> None:
    metrics_port = free_port()
    verifier = script(tmp_path, "v.sh", 'case "$1" in bad@*) echo "no such user"; exit 2;; '
                      'esac\necho\necho "$1"\nexit 1\n')
    relay = start_relay("--metrics-port", str(metrics_port), "--filter", "exit:1",
                        "--address-verifier", str(verifier))
    relay.wait_for_log("metrics server on")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("a@example.com", ["bad@example.net"], "Subject: x\r\n\r\nhi\r\n")
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail("a@example.com", ["good@example.net"], "Subject: x\r\n\r\nhi\r\n")
        smtp.rset()
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail("a@example.com", ["good@example.net"], "Subject: x\r\n\r\nh\0i\r\n")
    samples = scrape(metrics_port)
    for reason in ("recipient", "filter", "content"):
        assert samples[("emailrelay_rejected_total", (("reason", reason),))] == 1, reason
    assert samples[("emailrelay_messages_received_total", ())] == 0


def test_a_starttls_session_is_counted_as_tls(start_relay, tmp_path) -> None:
    """A session that did STARTTLS lands in the tls="yes" series, the plain probe in "no"."""
    pki = Pki(tmp_path)
    metrics_port = free_port()
    relay = start_relay("--metrics-port", str(metrics_port), "--server-tls",
                        "--server-tls-certificate", str(pki.pem()))
    relay.wait_for_log("metrics server on")
    tls_key = ("emailrelay_sessions_total", (("kind", "smtp"), ("tls", "yes")))
    plain_key = ("emailrelay_sessions_total", (("kind", "smtp"), ("tls", "no")))
    plain_before = wait_for_sample(metrics_port, plain_key, 1)[plain_key]  # the probe
    assert scrape(metrics_port).get(tls_key, 0) == 0
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        smtp.ehlo("client.example")
        assert smtp.starttls(context=pki.client_context())[0] == 220
        smtp.sendmail("a@example.com", ["b@example.net"], "Subject: x\r\n\r\nhi\r\n")
    samples = wait_for_sample(metrics_port, tls_key, 1)
    assert samples[plain_key] == plain_before
    assert samples[("emailrelay_connections", (("kind", "smtp"),))] == 0
    assert samples[("emailrelay_messages_received_total", ())] == 1


def test_a_permanent_forwarding_failure_is_counted(start_relay) -> None:
    """A 5xx from the smarthost: the message goes to .bad and counts as failed only."""
    metrics_port = free_port()
    with FakeSmtpServer(Script(mail="550 5.7.1 not from you")) as server:
        relay = start_relay("--metrics-port", str(metrics_port), "--forward-on-disconnect",
                            "--forward-to", server.address)
        relay.wait_for_log("metrics server on")
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.net"], "Subject: x\r\n\r\nhi\r\n")
        samples = wait_for_sample(metrics_port, ("emailrelay_messages_failed_total", ()), 1)
        assert server.messages == []
    assert len(relay.envelopes(".envelope.bad")) == 1
    # The counter has no reason label: the reason is in the .bad envelope.
    assert "X-MailRelay-Reason: 5.7.1 not from you" in relay.envelopes(
        ".envelope.bad")[0].read_text()
    assert samples[("emailrelay_messages_forwarded_total", ())] == 0
    assert samples[("emailrelay_messages_deferred_total", ())] == 0
    assert samples[("emailrelay_messages_received_total", ())] == 1
    assert samples[("emailrelay_queue_messages", (("state", "failed"), ("unit", "")))] == 1
    assert samples[("emailrelay_queue_messages", (("state", "ready"), ("unit", "")))] == 0


def test_queue_age_grows(relay) -> None:
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        smtp.sendmail("a@example.com", ["b@example.net"], "Subject: x\r\n\r\nhi\r\n")
    first = scrape(relay.metrics_port)[
        ("emailrelay_queue_oldest_message_age_seconds", (("unit", ""),))]
    time.sleep(1.1)
    second = scrape(relay.metrics_port)[
        ("emailrelay_queue_oldest_message_age_seconds", (("unit", ""),))]
    assert second >= first + 1.0


def test_health_document(relay) -> None:
    status, headers, body = get(relay.metrics_port, "/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["status"] == "ok" and document["problems"] == []
    assert document["pid"] == relay.process.pid
    (unit,) = document["instances"]
    assert unit["spool_directory"] == str(relay.spool)
    assert unit["listening"] == [f"127.0.0.1:{relay.port}"]
    assert unit["smtp"] == "enabled" and unit["dnsbl"] == "off"
    assert unit["queue"]["ready"] == 0


def test_health_fails_without_a_spool_directory(relay) -> None:
    moved = relay.spool.with_name("moved-away")
    relay.spool.rename(moved)
    try:
        status, _, body = get(relay.metrics_port, "/health")
        document = json.loads(body)
        assert status == 503 and document["status"] == "failing"
        assert any("not accessible" in p for p in document["problems"])
        # scraping still works
        assert ("emailrelay_messages_received_total", ()) in scrape(relay.metrics_port)
    finally:
        moved.rename(relay.spool)
    assert get(relay.metrics_port, "/health")[0] == 200


def test_curl_scrapes_it(relay) -> None:
    done = subprocess.run([shutil.which("curl") or "curl", "-sS", "-i",
                           f"http://127.0.0.1:{relay.metrics_port}/metrics"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200")
    assert "emailrelay_messages_received_total 0.0" in done.stdout


def test_http_errors(relay) -> None:
    port = relay.metrics_port
    assert get(port, "/nothing")[0] == 404
    status, headers, _ = get(port, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = get(port, "/health", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    # a client that says nothing does not hold up the others
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        assert get(port, "/health")[0] == 200


def test_metrics_listen_on_loopback_only_by_default(relay) -> None:
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{relay.metrics_port}"],
                               capture_output=True, text=True, timeout=10).stdout
    assert [line.split()[3] for line in listening.splitlines()] == [
        f"127.0.0.1:{relay.metrics_port}"]


def test_no_metrics_port_by_default(start_relay) -> None:
    relay = start_relay()
    assert "metrics server" not in relay.log()
