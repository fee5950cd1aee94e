"""examples/server.py: started on 127.0.0.1, concurrent requests from threads get the answers of
pdinfer.run (as `pdinfer run --json` prints them), bad requests get errors, then it shuts down."""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import pdinfer

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "weights" / "samples"


def load_example():
    spec = importlib.util.spec_from_file_location("server_example", ROOT / "examples" / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    for name in ("pd_light", "pd_light.int8"):
        (directory / f"{name.replace('.', '_')}.pdw").write_bytes((ROOT / "weights" / f"{name}.pdw").read_bytes())
    server = load_example().make_server(directory, port=0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, directory
    server.shutdown()
    server.server_close()
    thread.join(10)
    assert not thread.is_alive()


def post(server, name: str, body: bytes) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{server.server_address[1]}/models/{name}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_warm_up_loads_every_model(server):
    srv, _ = server
    assert sorted(srv.store.loaded()) == ["pd_light", "pd_light_int8"]
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/models", timeout=60) as r:
        assert json.loads(r.read()) == {"models": ["pd_light", "pd_light_int8"]}


def test_concurrent_requests_get_the_answers_of_pdinfer_run(server):
    srv, directory = server
    files = sorted(SAMPLES.glob("*.png"))[:4] + sorted(SAMPLES.glob("*.npy"))[:4]
    jobs = [(name, path) for name in ("pd_light", "pd_light_int8") for path in files] * 2
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: post(srv, job[0], job[1].read_bytes()), jobs))
    for (name, path), (status, answer) in zip(jobs, answers):
        assert status == 200, answer
        model = pdinfer.load(directory / f"{name}.pdw")
        expected = pdinfer.run(model, path)
        key = {"probability": "probabilities", "score": "scores", "logit": "logits"}[model.output_kind]
        assert answer["input"] == name and answer["class"] == model.classes[int(np.argmax(expected))]
        assert answer[key] == dict(zip(model.classes, map(float, expected)))  # bit for bit


def test_bad_requests_get_errors(server):
    srv, _ = server
    image = (SAMPLES / "corona_1.npy").read_bytes()
    assert post(srv, "missing", image)[0] == 404
    assert post(srv, "pd_light", b"not an image")[0] == 422
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 1, 60, 120), np.float32))
    status, answer = post(srv, "pd_light", buffer.getvalue())
    assert status == 422 and answer["error"]


def test_a_model_file_that_does_not_load_is_reported_and_the_others_served(tmp_path, capsys):
    (tmp_path / "good.pdw").write_bytes((ROOT / "weights" / "pd_light.pdw").read_bytes())
    (tmp_path / "broken.pdw").write_bytes((ROOT / "weights" / "pd_light.pdw").read_bytes()[:5000])
    server = load_example().make_server(tmp_path, port=0)
    try:
        assert "not serving 'broken'" in capsys.readouterr().err and server.store.loaded() == ["good"]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        image = (SAMPLES / "corona_1.npy").read_bytes()
        status, answer = post(server, "broken", image)
        assert status == 422 and "broken.pdw" in answer["error"]
        assert post(server, "good", image)[0] == 200
        server.shutdown()
        thread.join(10)
    finally:
        server.server_close()
