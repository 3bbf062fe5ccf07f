"""OpenAICompatibleExplainer against a fake chat-completions server on 127.0.0.1 (no external network)."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from isthmus.interp.explain import (Example, ExplainerError, ExplainerTimeout, LatentRecord,
                                    OpenAICompatibleExplainer, explain_prompt)

torch.set_num_threads(1)
SECRET = "sk-test-SECRET-1234567890"
ENV = "ISTHMUS_TEST_EXPLAINER_KEY"


class FakeServer:
    """Plays a script of behaviours, one per request: ("ok", text) | ("status", code) | ("sleep", s, text)."""

    def __init__(self, script, default=("ok", "tokens about fruit")):
        self.script, self.default, self.requests, self.lock = list(script), default, [], threading.Lock()
        self.in_flight = self.max_in_flight = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep the test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                           "body": body})
                    step = outer.script.pop(0) if outer.script else outer.default
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if step[0] == "sleep":
                        time.sleep(step[1])
                        step = ("ok", step[2])
                    with outer.lock:  # done before the reply is sent: the client still holds its slot
                        outer.in_flight -= 1
                    if step[0] == "status":
                        self.send_response(step[1])
                        self.end_headers()
                        self.wfile.write(f"error; your key was {SECRET}".encode())
                        return
                    out = json.dumps({"choices": [{"message": {"role": "assistant", "content": step[1]}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _record(i=0):
    ex = Example([1, 2, 3, 2], [0.0, 1.5, 0.0, 0.7])
    return LatentRecord(latent=i, top=[ex], train=[ex], test=[ex], non_activating=[Example([3, 3], [0.0, 0.0])],
                        vocab=["<bos>", "apple", "the", "pear"])


def _client(url, **kw):
    kw = {"api_key_env": ENV, "timeout": 2.0, "max_retries": 2, "backoff": 0.01, **kw}
    return OpenAICompatibleExplainer(url, "fake-model", **kw)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(ENV, SECRET)


def test_success_sends_prompt_model_and_key():
    with FakeServer([("ok", "fruit words\nextra line")]) as srv:
        expl = _client(srv.url).explain(_record())
    assert expl.text == "fruit words"
    (req,) = srv.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {SECRET}"
    assert req["body"]["model"] == "fake-model"
    assert "apple <<the>> pear <<the>>" in req["body"]["messages"][1]["content"]


def test_no_authorization_header_without_key(monkeypatch):
    monkeypatch.delenv(ENV)
    with FakeServer([]) as srv:
        _client(srv.url).explain(_record())
    assert srv.requests[0]["auth"] is None


def test_retry_after_500_then_success():
    with FakeServer([("status", 500), ("status", 503)]) as srv:
        client = _client(srv.url)
        assert client.explain(_record()).text == "tokens about fruit"
    assert len(srv.requests) == 3 and client.stats["retries"] == 2


def test_non_retryable_status_fails_at_once():
    with FakeServer([("status", 400)]) as srv:
        with pytest.raises(ExplainerError, match="HTTP 400"):
            _client(srv.url).explain(_record())
    assert len(srv.requests) == 1


def test_timeout_raises_explainer_timeout():
    with FakeServer([("sleep", 1.5, "late")] * 2) as srv:
        client = _client(srv.url, timeout=0.2, max_retries=1)
        with pytest.raises(ExplainerTimeout, match="timed out"):
            client.explain(_record())
    # both attempts were made and timed out (no answer from the slow server was waited for)
    assert len(srv.requests) == 2 and client.stats["retries"] == 1


def test_cache_hit_skips_the_server(tmp_path):
    with FakeServer([("ok", "first"), ("ok", "second")]) as srv:
        a = _client(srv.url, cache_dir=tmp_path).explain(_record())
        c2 = _client(srv.url, cache_dir=tmp_path)
        b = c2.explain(_record())
    assert a.text == b.text == "first" and len(srv.requests) == 1 and c2.stats["cache_hits"] == 1
    payload = c2._payload(explain_prompt(_record()))
    assert (tmp_path / f"{OpenAICompatibleExplainer.cache_key(payload)}.json").is_file()
    assert SECRET not in "".join(p.read_text() for p in tmp_path.iterdir())


def test_key_never_in_repr_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeServer([("status", 500)] * 5) as srv:
        client = _client(srv.url, max_retries=1)
        with pytest.raises(ExplainerError) as err:
            client.explain(_record())
    assert caplog.records  # the failed attempts were logged ...
    texts = [caplog.text, str(err.value), repr(err.value), repr(client), str(vars(client))]
    assert all(SECRET not in t for t in texts)  # ... without the key
    assert ENV in repr(client)


def test_concurrency_limit():
    with FakeServer([], default=("sleep", 0.15, "x")) as srv:
        out = _client(srv.url, max_concurrency=2).explain_many([_record(i) for i in range(6)])
    # identical prompts: no cache dir, so every record is a request
    assert len(out) == 6 and len(srv.requests) == 6 and srv.max_in_flight <= 2


def test_client_simulator_detection_over_http():
    from isthmus.interp.explain import ClientSimulator, Explanation, detection_score

    rec = _record()
    with FakeServer([("ok", "Sure: [1, 0]"), ("ok", "no list here")]) as srv:
        sim = ClientSimulator(_client(srv.url), vocab=rec.vocab)
        out = detection_score(rec, Explanation("the word 'the'"), sim)
        assert out["detection_bacc"] == 1.0
        assert "1. apple the pear the" in srv.requests[0]["body"]["messages"][0]["content"]
        assert sim.detect(Explanation("x"), rec.test) == [False] and sim.malformed == 1
