"""The JSON API of `lzn serve` through Starlette's test client, on tiny joint and text models: each endpoint
gives what the model's own methods give, and each bad input gets a 4xx JSON error naming the problem,
after which the server still answers."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import torch
from PIL import Image

from lzn.serve import Limits, ModelService, RequestError, Settings
from lzn.serve.app import create_app
from tests.serve.conftest import make_service

starlette_testclient = pytest.importorskip("starlette.testclient")
TestClient = starlette_testclient.TestClient


def png(image: torch.Tensor) -> str:
    """(C, H, W) in [-1, 1] -> base64 PNG."""
    pixels = ((image[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def read_png(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    assert image.format == "PNG"
    return image


@pytest.fixture(scope="module")
def joint(joint_service):
    return TestClient(create_app(joint_service))


@pytest.fixture(scope="module")
def text(text_service):
    return TestClient(create_app(text_service))


@pytest.fixture(scope="module")
def digits(gallery):
    """Four digits as the server reads their PNGs: pixels rounded to 0..255."""
    return ((gallery.images[:4] + 1) * 127.5).round() / 127.5 - 1


# ---- each endpoint --------------------------------------------------------------------------------

def test_health_and_info(joint, text):
    assert joint.get("/health").json() == {"status": "ok"}
    info = joint.get("/info").json()
    assert info["data_types"] == ["image", "label"] and info["num_classes"] == 10
    assert info["class_names"] == [str(i) for i in range(10)] and info["image"] == {"channels": 1, "size": 8}
    ops = info["operations"]
    assert ops["classify"] and ops["generate_labels"] and ops["retrieve"] and ops["zones"] and ops["reconstruct"]
    assert not ops["generate_captions"] and "no text type" in info["cannot"]["generate_captions"]
    assert info["limits"]["batch"] == 16 and info["gallery"]["size"] == 1438
    tinfo = text.get("/info").json()
    assert tinfo["data_types"] == ["image", "text"] and tinfo["operations"]["generate_captions"]
    assert not tinfo["operations"]["classify"] and "no label side" in tinfo["cannot"]["classify"]
    assert "prompts" in tinfo["cannot"]["classify"]


def test_classify_is_the_models_classify(joint, joint_service, digits):
    res = joint.post("/classify", json={"images": [png(x) for x in digits], "nearest": 3, "seed": 5})
    assert res.status_code == 200, res.text
    preds = res.json()["predictions"]
    model = joint_service.model
    want = model.classify(digits, noise_scale=1.0, generator=torch.Generator().manual_seed(5))
    assert [p["class"] for p in preds] == want.tolist()
    for p in preds:
        probs = p["probabilities"]
        assert len(probs) == 10 and sum(probs) == pytest.approx(1, abs=1e-4)
        assert max(range(10), key=probs.__getitem__) == p["class"] and p["name"] == str(p["class"])
        assert len(p["zone"]) == 2 and len(p["nearest"]) == 3
        assert read_png(p["nearest"][0]["image"]).size == (8, 8)
    again = joint.post("/classify", json={"images": [png(x) for x in digits], "nearest": 3, "seed": 5}).json()
    assert again["predictions"] == preds  # seeded: the same request, the same answer


def test_classify_reads_data_urls_transparency_and_big_images(joint, digits):
    plain = joint.post("/classify", json={"images": [png(digits[0])]}).json()["predictions"][0]
    url = joint.post("/classify", json={"images": ["data:image/png;base64," + png(digits[0])]}).json()
    assert url["predictions"][0]["class"] == plain["class"]
    big = Image.fromarray(((digits[0][0] + 1) * 127.5).round().to(torch.uint8).numpy()).resize((64, 64), Image.NEAREST)
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent where there is no ink
    rgba.paste(big.convert("RGBA"), (0, 0), big)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    res = joint.post("/classify", json={"images": [base64.b64encode(buf.getvalue()).decode()]})
    assert res.status_code == 200 and len(res.json()["predictions"][0]["probabilities"]) == 10


def test_generate_by_label_name_number_and_seed(joint):
    res = joint.post("/generate", json={"labels": [3, "7"], "seed": 1, "steps": 2})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["labels"] == [3, 7] and body["names"] == ["3", "7"]
    assert [read_png(p).size for p in body["images"]] == [(8, 8), (8, 8)]
    assert joint.post("/generate", json={"labels": [3, "7"], "seed": 1, "steps": 2}).json() == body
    assert joint.post("/generate", json={"labels": [3, "7"], "seed": 2, "steps": 2}).json()["images"] != body["images"]
    free = joint.post("/generate", json={"num": 3, "sampler": "heun"}).json()
    assert len(free["images"]) == 3 and len(free["labels"]) == 3


def test_embed_retrieve_reconstruct_zones(joint, joint_service, gallery, digits):
    model = joint_service.model
    images = [png(x) for x in digits[:2]]
    e = joint.post("/embed", json={"images": images}).json()
    want = model.embed(digits[:2])
    assert e["dim"] == want.shape[1] and torch.allclose(torch.tensor(e["embeddings"]), want, atol=1e-5)
    assert joint.post("/embed", json={"images": images, "head": True}).json()["dim"] == model.latent_dim
    found = joint.post("/retrieve", json={"images": images, "k": 4}).json()
    want = model.retrieve("image", digits[:2], "image", gallery.images, k=4)
    assert [[r["index"] for r in row] for row in found["results"]] == want.indices.tolist()
    assert found["results"][0][0]["class"] == int(gallery.labels[want.indices[0, 0]])
    rec = joint.post("/reconstruct", json={"images": images, "steps": 2}).json()
    assert len(rec["images"]) == 2 and len(rec["labels"]) == 2  # class-conditional: the label decoder's classes
    rec = joint.post("/reconstruct", json={"images": images, "labels": [0, 1], "steps": 2}).json()
    assert rec["labels"] == [0, 1]
    picture = joint.get("/zones").json()
    assert len(picture["points"]) == 300 and len(picture["classes"]) == 300 and picture["method"] == "t-SNE"
    assert picture["queries"] is None and picture["reference_size"] == 1438
    assert len(joint.get("/zones?label=3&label=5").json()["queries"]) == 2
    placed = joint.post("/zones", json={"images": images}).json()["queries"]
    classified = joint.post("/classify", json={"images": images}).json()["predictions"]
    assert len(placed) == 2 and placed == [p["zone"] for p in classified]  # both: the zone centre


def test_text_model_generates_retrieves_and_classifies_by_prompts(text, text_service, gallery, digits):
    model = text_service.model
    res = text.post("/generate", json={"captions": ["a fat zero", "a thin one"], "steps": 2})
    assert res.status_code == 200, res.text
    assert len(res.json()["images"]) == 2
    captions = ["a fat zero"]
    found = text.post("/retrieve", json={"captions": captions, "k": 5}).json()["results"]
    want = model.retrieve("text", captions, "image", gallery.images, k=5)
    assert [r["index"] for r in found[0]] == want.indices[0].tolist()
    prompts = [f"the digit {w}" for w in ("zero", "one", "two")]
    preds = text.post("/classify", json={"images": [png(x) for x in digits], "prompts": prompts}).json()["predictions"]
    want = model.classify(digits, prompts=prompts, generator=torch.Generator().manual_seed(0))
    assert [p["class"] for p in preds] == want.tolist() and preds[0]["name"] in prompts
    assert text.post("/embed", json={"captions": captions}).json()["dim"] == model.latent_dim
    assert len(text.get("/zones?caption=a%20fat%20zero").json()["queries"]) == 1
    refused = text.post("/classify", json={"images": [png(digits[0])]})
    assert refused.status_code == 400 and "no label side" in refused.json()["error"]
    assert "prompts" in refused.json()["error"]


# ---- bad inputs -----------------------------------------------------------------------------------

def _not_png() -> str:
    return base64.b64encode(b"these bytes are not an image at all").decode()


def _image(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


BAD = [  # (path, body, status, words of the message)
    ("/classify", [1, 2], 400, "must be a JSON object"),
    ("/classify", {"images": "abc"}, 400, '"images" must be an array'),
    ("/classify", {"images": []}, 400, "is empty"),
    ("/classify", {"images": [42]}, 400, "base64-encoded PNG"),
    ("/classify", {"images": ["not base64 !"]}, 400, "not valid base64"),
    ("/classify", {"images": ["NOTPNG"]}, 400, "not a readable PNG or JPEG"),
    ("/classify", {"images": ["/etc/passwd"]}, 400, "not valid base64"),
    ("/classify", {"images": ["HUGE"]}, 413, "--max-image-side"),
    ("/classify", {"images": ["ONE"] * 17}, 413, "at most 16"),
    ("/classify", {"images": ["ONE"], "nearest": 99}, 413, "--max-samples"),
    ("/classify", {"images": ["ONE"], "colour": "red"}, 400, "unknown field 'colour'"),
    ("/generate", {"num": "3"}, 400, '"num" must be an integer'),
    ("/generate", {"num": 1.5}, 400, '"num" must be an integer'),
    ("/generate", {"num": True}, 400, '"num" must be an integer'),
    ("/generate", {"num": 0}, 400, "from 1 to 16"),
    ("/generate", {"num": 17}, 413, "--max-samples"),
    ("/generate", {"num": 2, "steps": 101}, 413, "--max-steps"),
    ("/generate", {"num": 2, "seed": -1}, 400, '"seed"'),
    ("/generate", {"num": 2, "sampler": "dopri5"}, 400, "euler, heun"),
    ("/generate", {"num": 2, "labels": [1]}, 400, "exactly one of"),
    ("/generate", {}, 400, "exactly one of"),
    ("/generate", {"labels": ["cat"]}, 400, "unknown class 'cat'"),
    ("/generate", {"labels": [10]}, 400, "unknown class 10"),
    ("/generate", {"labels": [-1]}, 400, "unknown class -1"),
    ("/generate", {"labels": [[1]]}, 400, "unknown class"),
    ("/generate", {"captions": ["a fat zero"]}, 400, "no text type"),
    ("/embed", {"captions": ["a fat zero"]}, 400, "no text type"),
    ("/embed", {"images": ["ONE"], "head": "yes"}, 400, '"head" must be true or false'),
    ("/retrieve", {"captions": ["a fat zero"]}, 400, "no text type"),
    ("/retrieve", {"images": ["ONE"], "k": 0}, 400, '"k"'),
    ("/reconstruct", {"images": ["ONE"], "labels": [1, 2]}, 400, "one per image"),
    ("/zones", {"labels": ["x"]}, 400, "unknown class 'x'"),
]


@pytest.mark.parametrize("path, body, status, words", BAD, ids=[f"{p}-{w}" for p, _, _, w in BAD])
def test_bad_input_gets_a_json_error_naming_it(joint, digits, path, body, status, words):
    one = png(digits[0])
    fill = {"ONE": one, "NOTPNG": _not_png(), "HUGE": _image(2000, 10)}
    if isinstance(body, dict):
        body = {k: ([fill.get(v, v) if isinstance(v, str) else v for v in val] if isinstance(val, list) else val)
                for k, val in body.items()}
    res = joint.post(path, json=body)
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    assert words in res.json()["error"], res.json()
    assert joint.get("/health").json() == {"status": "ok"}  # the server goes on


@pytest.mark.parametrize("raw, words", [
    (b'{"num": NaN}', "NaN"),
    (b'{"num": Infinity}', "Infinity"),
    (b'{"num": -Infinity}', "-Infinity"),
    (b'{"seed": 1e999}', "too large"),
    (b'{"num": ', "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "nests too deeply"),
    (b"", "empty"),
])
def test_bodies_that_are_not_json_objects(joint, raw, words):
    res = joint.post("/generate", content=raw, headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and words in res.json()["error"], res.text
    assert joint.get("/health").status_code == 200


def test_transport_errors_are_json_too(joint):
    res = joint.post("/generate", content=b'{"num": 1}', headers={"Content-Type": "text/plain"})
    assert res.status_code == 415 and "application/json" in res.json()["error"]
    res = joint.get("/nothing-here")
    assert res.status_code == 404 and "/classify" in res.json()["error"]
    res = joint.get("/classify")
    assert res.status_code == 405 and "POST" in res.json()["error"]
    res = joint.get("/zones?colour=red")
    assert res.status_code == 400 and "unknown query parameter 'colour'" in res.json()["error"]
    res = joint.get("/zones?seed=x")
    assert res.status_code == 400 and "?seed=" in res.json()["error"]


def test_request_bytes_limit(joint_run, gallery, digits):
    client = TestClient(create_app(make_service(joint_run, None, Limits(request_bytes=2000))))
    res = client.post("/classify", json={"images": [png(digits[0])] * 16})
    assert res.status_code == 413 and "--max-request-bytes" in res.json()["error"]
    # without a Content-Length (chunked): cut off while reading
    res = client.post("/classify", content=iter([b'{"images": ["', b"A" * 3000, b'"]}']),
                      headers={"Content-Type": "application/json"})
    assert res.status_code == 413 and "--max-request-bytes" in res.json()["error"]
    assert client.post("/classify", json={"images": [png(digits[0])]}).status_code == 200
    no_gallery = client.post("/retrieve", json={"images": [png(digits[0])]})
    assert no_gallery.status_code == 400 and "no image set" in no_gallery.json()["error"]


def test_token_and_host(joint_service):
    client = TestClient(create_app(joint_service, token="s3cret"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        res = client.get("/health", headers=headers)
        assert res.status_code == 401 and "Authorization: Bearer" in res.json()["error"], res.text
    assert client.get("/health", headers={"Authorization": "Bearer s3cret"}).json() == {"status": "ok"}
    assert client.post("/generate", json={"num": 1}).status_code == 401
    page = client.get("/?token=s3cret")
    assert page.status_code == 200 and "lzn explorer" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/?token=nope").status_code == 401
    local = TestClient(create_app(joint_service, hosts=("127.0.0.1", "localhost", "::1")))
    assert local.get("/health").status_code == 400  # the test client's Host is "testserver"
    assert local.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert local.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200


def test_a_failure_inside_the_model_is_a_500_and_the_server_goes_on(joint_run, digits, monkeypatch):
    service = make_service(joint_run, None)
    client = TestClient(create_app(service), raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(service.model, "generate", broken)
    res = client.post("/generate", json={"num": 1})
    assert res.status_code == 500 and "simulated failure" in res.json()["error"]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/classify", json={"images": [png(digits[0])]}).status_code == 200


def test_concurrent_requests_run_the_model_one_at_a_time(joint_service, digits, monkeypatch):
    client = TestClient(create_app(joint_service))
    inside, most = [0], [0]
    latents = joint_service.model.latents

    def counting(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            threading.Event().wait(0.01)
            return latents(*args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(joint_service.model, "latents", counting)
    body = {"images": [png(x) for x in digits[:2]], "seed": 3}
    want = client.post("/classify", json=body).json()
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda: answers.append(client.post("/classify", json=body).json()))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and len(answers) == 6 and all(a == want for a in answers)


def test_limits_are_checked():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        Limits(batch=0)
    assert RequestError(413, "x").status == 413
    assert json.loads(json.dumps(Limits().as_dict()))["request_bytes"] == 4 * 2**20


def test_a_model_without_a_reference_bank_gets_one_from_the_image_set(joint_run, gallery):
    service = make_service(joint_run, None)
    service.model.set_reference(None)
    assert service.model.reference is None
    built = ModelService(service.model, gallery, settings=Settings(zone_points=50, reference_size=100))
    info = built.info()
    assert info["reference"] == {"size": 100, "source": "built at start from 100 images of digits-train"}
    assert info["operations"]["zones"]
    with pytest.raises(ValueError, match="--max-steps"):
        ModelService(service.model, None, Limits(steps=5), Settings(steps=20))
