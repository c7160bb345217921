"""mathpal_common.comet with the real comet_ml: the server probe, the online/offline decision, a job's settings.

No network: "servers" are sockets on 127.0.0.1 that this test opens (or a port it closed).
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from pathlib import Path

from mathpal_common.comet import (
    end_experiment,
    flatten_metrics,
    job_env,
    probe_server,
    read_offline_metrics,
    start_experiment,
)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_flatten_keeps_numbers_only():
    tree = {
        "n": 3,
        "models": {"base": {"accuracy": 0.5, "flag": True, "name": "x", "relevance": None}},
        "model": "path",
    }
    assert flatten_metrics(tree) == {"n": 3, "models/base/accuracy": 0.5}


def test_probe_says_why_a_server_is_unreachable():
    started = time.perf_counter()
    assert probe_server(f"http://127.0.0.1:{closed_port()}/clientlib/", timeout=5) == "ConnectionError"
    assert time.perf_counter() - started < 5

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.perf_counter()
        reason = probe_server(f"http://127.0.0.1:{silent.getsockname()[1]}/clientlib/", timeout=0.5)
        assert reason in {"no answer", "ReadTimeout"}
        assert time.perf_counter() - started < 3


@contextlib.contextmanager
def ping_server(paths: list[str] | None = None):
    """A local HTTP server that answers Comet's health ping; yields its clientlib URL."""

    class Ping(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            if paths is not None:
                paths.append(self.path)
            self.send_response(200 if self.path.endswith("/health/ping") else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clientlib/"
    finally:
        server.shutdown()
        server.server_close()


def test_probe_accepts_a_server_that_answers_its_health_ping():
    paths: list[str] = []
    with ping_server(paths) as url:
        assert probe_server(url, timeout=5) is None
    assert paths == ["/clientlib/health/ping"]


def test_without_a_key_the_experiment_is_offline_and_its_archive_reads_back(tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    run = start_experiment(tmp_path / "comet")
    assert not run.online and run.fallback is None
    run.experiment.log_metrics({"counts/kept": 3})
    archive = end_experiment(run)
    assert archive is not None and archive.parent == tmp_path / "comet"
    assert read_offline_metrics(archive)["counts/kept"] == 3


def test_a_key_with_an_unreachable_server_goes_offline_with_the_reason(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/clientlib/"
    monkeypatch.setenv("COMET_API_KEY", "not-a-real-key")
    monkeypatch.setenv("COMET_URL_OVERRIDE", url)
    started = time.perf_counter()
    run = start_experiment(tmp_path / "comet", probe_timeout=5)
    assert time.perf_counter() - started < 5
    assert not run.online and run.fallback == f"server {url} unreachable within 5 s (ConnectionError)"
    assert end_experiment(run).is_file()


def test_a_training_job_logs_offline_into_its_output_dir_without_a_key():
    offline = {"COMET_START_ONLINE": "0", "COMET_OFFLINE_DIRECTORY": "out/comet"}
    assert job_env({}, Path("out")) == (offline, None)
    assert job_env({"COMET_START_ONLINE": "1"}, Path("out")) == ({}, None)


def test_a_training_job_with_a_key_goes_online_only_when_the_server_answers(monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", "k")
    with ping_server() as url:
        monkeypatch.setenv("COMET_URL_OVERRIDE", url)
        assert job_env({"COMET_API_KEY": "k"}, Path("out")) == ({}, None)
    closed = f"http://127.0.0.1:{closed_port()}/clientlib/"
    monkeypatch.setenv("COMET_URL_OVERRIDE", closed)
    settings, why = job_env({"COMET_API_KEY": "k"}, Path("out"), probe_timeout=5)
    assert settings == {"COMET_START_ONLINE": "0", "COMET_OFFLINE_DIRECTORY": "out/comet"}
    assert why == f"server {closed} unreachable within 5 s (ConnectionError)"
