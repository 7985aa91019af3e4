"""Named data types in one model (method.md §12): text beside image and label, tasks as compositions of
``latents`` and ``decode``, a type registered from outside the library, save / load with old folders."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from lzn.core import zones
from lzn.core.reference import latents_with_reference
from lzn.models import (DATA_TYPES, CandidateDecoder, DataType, FlowConfig, LabelAnchors, LatentZoningNetwork, TypeParts,
                        build, data_type, register_data_type, register_network)

Q = 6
TEXTS = ["a fat zero", "a thin one", "the digit two", "seven, slanted", "a faint four", "eight"]


def text_model(seed: int = 0, labels: bool = True, steps: int = 8) -> LatentZoningNetwork:
    torch.manual_seed(seed)
    enc = build("small_encoder", image_channels=1, image_size=8, latent_dim=Q, channels=[4, 8], hidden=16)
    dec = build("small_unet", image_channels=1, image_size=8, latent_dim=Q, channels=4, channel_mult=[1, 2],
                time_dim=8, cond_dim=8)
    with torch.no_grad():  # the decoder's last conv starts at zero; give it a non-trivial output
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    text = TypeParts(build("small_text_encoder", latent_dim=Q, width=16, layers=1), build("candidate_decoder"))
    flow = FlowConfig(steps=steps, label_steps=20, candidate_steps=40, noise_scale=0.5)
    return LatentZoningNetwork(enc, dec, LabelAnchors(3, Q) if labels else None, flow, types={"text": text}).eval()


def images(n: int = 5, seed: int = 1) -> Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_types_and_parts_are_named():
    model = text_model()
    assert model.data_types == ("image", "label", "text")
    assert list(model.parts()) == ["encoder", "decoder", "label_anchors", "text_encoder"]  # no weights: no decoder
    assert isinstance(model.text_decoder, CandidateDecoder)


def test_image_and_label_are_entries_of_the_one_table():
    """The model asks each type's entry, built in or registered; names of built-in types stay reserved."""
    model, plain = text_model(), text_model(labels=False)
    assert data_type("image") is DATA_TYPES["image"] and data_type("label") is DATA_TYPES["label"]
    assert [DATA_TYPES[n].present(model) for n in ("image", "label", "text")] == [True, True, True]
    assert not DATA_TYPES["label"].present(plain) and plain.data_types == ("image", "text")
    assert DATA_TYPES["text"].encoder(model) is model.text_encoder and DATA_TYPES["label"].encoder(model) is model.label_anchors
    with pytest.raises(ValueError, match="new lowercase identifier other than"):
        register_data_type(DataType("label", "labels", list))
    with pytest.raises(ValueError, match=r"unknown data type 'audio' \(registered: .*text.*; built in: image, label\)"):
        data_type("audio")


def test_text_latents_are_the_core_flow_over_text_anchors():
    model = text_model()
    noise = torch.randn(len(TEXTS), Q, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model.anchors("text", TEXTS)  # (B, q)
        torch.testing.assert_close(model.embed("text", TEXTS), a)
        batch = model.latents("text", TEXTS, noise=noise, noise_scale=0.7)
        torch.testing.assert_close(batch, zones.latents(a, noise, steps=8, solver="dpm3", noise_scale=0.7))
        bank = model.build_reference_from(TEXTS[:4], type="text")  # (4, q)
        alone = torch.cat([model.latents("text", [t], noise=noise[i:i + 1]) for i, t in enumerate(TEXTS)])
        together = model.latents("text", TEXTS, noise=noise)  # the reference is now the default context
        torch.testing.assert_close(alone, together, atol=2e-4, rtol=1e-3)  # padding to the longest text: float noise
        want = latents_with_reference(a, bank, noise, steps=8, solver="dpm3")
        torch.testing.assert_close(together, want)
    assert torch.equal(model.reference_of("text"), bank) and model.reference is None  # images keep theirs


def test_text_decoder_finds_each_latent_in_its_own_zone():
    """Latents computed over a candidate set flow back to their own candidate (the zones are disjoint)."""
    model = text_model()
    with torch.no_grad():
        lat = model.latents("text", TEXTS, noise=torch.randn(len(TEXTS), Q), context="batch")
        choice = model.decode("text", lat, TEXTS, k=3)
    assert torch.equal(choice.indices[:, 0], torch.arange(len(TEXTS)))
    assert choice.indices.shape == choice.probs.shape == (len(TEXTS), 3)
    assert bool((choice.probs[:, :-1] >= choice.probs[:, 1:]).all()) and float(choice.probs.sum(1).max()) <= 1 + 1e-6


def test_candidate_scores_against_a_naive_reverse_flow():
    """The candidate decoder's probabilities equal a deliberately plain Euler loop of the reverse flow
    (method.md §2.2: velocity = (z - E[anchor | z, t]) / t with uniform weights over the candidates)."""
    torch.manual_seed(3)
    anchors, lat = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    steps, cutoff = 10, 0.2
    got = CandidateDecoder()(lat, anchors, steps=steps, cutoff=cutoff)
    z, record = lat.clone(), []
    for i in range(steps):  # t from 1 down to 0 in equal steps; responsibilities at the current t
        t = 1.0 - i / steps
        logits = -((z[:, None, :] - (1 - t) * anchors[None]) ** 2).sum(-1) / (2 * t * t)  # (B, M)
        r = torch.softmax(logits, dim=1)
        record.append(r)
        mean = r @ anchors
        z = z - (1.0 / steps) * (z - mean) / t
    scores = torch.stack(record)[int(cutoff * steps):].mean(0)
    best = ((z[:, None, :] - anchors[None]) ** 2).sum(-1).argmin(1)
    scores[torch.arange(4), best] = scores.max(1).values + 1e-6
    torch.testing.assert_close(got, scores / scores.sum(1, keepdim=True), rtol=1e-3, atol=1e-3)


def test_tasks_are_compositions_of_latents_and_decode():
    model = text_model()
    x = images()
    with torch.no_grad():
        # image -> text retrieval = the image latents (zone centres over the query batch) decoded as text
        lat = model.latents(x, noise=torch.zeros(5, Q), noise_scale=0.0, context="batch")
        want = model.decode("text", lat, TEXTS, k=2)
        got = model.retrieve("image", x, "text", TEXTS, k=2)
        assert torch.equal(got.indices, want.indices)
        torch.testing.assert_close(got.probs, want.probs)
        # prompt classification = the best of the class prompts
        prompts = TEXTS[:3]
        assert torch.equal(model.classify(x, prompts=prompts), model.retrieve("image", x, "text", prompts, k=1).indices[:, 0])
        scores = model.retrieval_scores("text", TEXTS, "image", x)  # (6, 5)
        assert scores.shape == (6, 5) and torch.allclose(scores.sum(1), torch.ones(6, dtype=scores.dtype))
        # text -> image generation = latents from the captions' zones, decoded as images
        g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
        out = model.generate(given=("text", TEXTS[:3]), sampler="euler", steps=3, generator=g())
        gen = g()
        lat = model.latents("text", TEXTS[:3], noise_scale=0.5, generator=gen)
        assert torch.equal(out.latents, lat)
        assert torch.equal(out.images, model.decode("image", lat, sampler="euler", steps=3, generator=gen))
        # the label zones spelled as a type are today's class-conditional generation
        a = model.generate(given=("label", [0, 2]), sampler="euler", steps=2, generator=g())
        b = model.generate(labels=[0, 2], sampler="euler", steps=2, generator=g())
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(model.decode("label", a.latents), model.label_anchors.decode(a.latents, steps=20))


def test_wrong_types_and_samples_name_the_expected_form():
    model = text_model(labels=False)
    with pytest.raises(ValueError, match="no data type 'txt'; did you mean 'text'"):
        model.latents("txt", TEXTS)
    with pytest.raises(TypeError, match="list of strings, got one string"):
        model.latents("text", "a fat zero")
    with pytest.raises(ValueError, match="decoded by choice among candidates"):
        model.decode("text", torch.zeros(2, Q))
    with pytest.raises(ValueError, match=r"latents must be a \(B >= 1, 6\) tensor"):
        model.decode("text", torch.zeros(2, 3), TEXTS)
    with pytest.raises(ValueError, match="no classes"):
        model.generate(given=("label", [0]))
    with pytest.raises(TypeError, match=r"given must be a \(type, samples\) pair"):
        model.generate(given=TEXTS)
    with pytest.raises(ValueError, match="no text reference set: call model.build_reference_from"):
        model.latents("text", TEXTS, context="reference")
    with pytest.raises(TypeError, match="pass noise, noise_scale, generator and context as keywords"):
        model.latents(images(), torch.zeros(5, Q))
    with pytest.raises(ValueError, match="'image' is built in"):
        LatentZoningNetwork(types={"image": TypeParts(nn.Linear(2, 2))})
    with pytest.raises(ValueError, match="unknown data type 'audio'"):
        LatentZoningNetwork(types={"audio": TypeParts(nn.Linear(2, 2))})


def test_text_models_save_and_load_with_their_reference(tmp_path):
    model = text_model()
    model.build_reference_from(TEXTS[:4], type="text")
    model.save_pretrained(str(tmp_path / "m"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["types"]["text"]["encoder"]["name"] == "small_text_encoder"
    loaded = LatentZoningNetwork.from_pretrained(str(tmp_path / "m"))
    assert loaded.data_types == model.data_types and torch.equal(loaded.reference_of("text"), model.reference_of("text"))
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    with torch.no_grad():
        a = model.generate(given=("text", TEXTS[:2]), sampler="euler", steps=2, generator=g())
        b = loaded.generate(given=("text", TEXTS[:2]), sampler="euler", steps=2, generator=g())
    assert torch.equal(a.images, b.images)


def test_folders_written_before_types_load(tmp_path):
    """A folder from before data types had names (no "types", no candidate keys in "flow") loads as before."""
    torch.manual_seed(0)
    enc = build("small_encoder", image_channels=1, image_size=8, latent_dim=Q, channels=[4, 8], hidden=16)
    model = LatentZoningNetwork(enc, None, LabelAnchors(3, Q))
    model.save_pretrained(str(tmp_path / "old"))
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    del config["types"]
    for key in ("candidate_steps", "candidate_cutoff", "noise_scale"):
        del config["flow"][key]
    path.write_text(json.dumps(config))
    loaded = LatentZoningNetwork.from_pretrained(str(tmp_path / "old"))
    assert loaded.data_types == ("image", "label") and loaded.flow == model.flow
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.classify(x, context="batch", generator=torch.Generator().manual_seed(0)),
                           model.classify(x, context="batch", generator=torch.Generator().manual_seed(0)))


# ---- a type added from outside the library: points in the plane ("xy"; docs/data-types.md registers "point")

class PointEncoder(nn.Module):
    """(B, 2) points -> (B, q) anchors."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Linear(2, latent_dim)

    def forward(self, points: Tensor) -> Tensor:
        return self.net(points)


def check_points(points: object, who: str) -> Tensor:
    if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"{who} takes a (B, 2) tensor of points")
    return points.float()


def test_a_new_type_is_an_encoder_and_a_registration(tmp_path):
    register_data_type(DataType("xy", "a (B, 2) tensor", check_points, count=lambda p: p.shape[0]))
    register_network("xy_encoder", __name__, "PointEncoder", data="xy")
    torch.manual_seed(0)
    enc = build("small_encoder", image_channels=1, image_size=8, latent_dim=Q, channels=[4, 8], hidden=16)
    model = LatentZoningNetwork(enc, flow=FlowConfig(candidate_steps=200),  # close anchors: a finer reverse flow
                                types={"xy": TypeParts(build("xy_encoder", latent_dim=Q),
                                                          build("candidate_decoder"))}).eval()
    pts = torch.randn(7, 2)
    with torch.no_grad():
        lat = model.latents("xy", pts, noise=torch.randn(7, Q), context="batch")
        assert torch.equal(model.decode("xy", lat, pts).indices[:, 0], torch.arange(7))
        assert model.retrieve("image", images(), "xy", pts, k=2).indices.shape == (5, 2)
    with pytest.raises(ValueError, match=r"takes a \(B, 2\) tensor"):
        model.latents("xy", torch.zeros(3))
    model.save_pretrained(str(tmp_path / "p"))
    loaded = LatentZoningNetwork.from_pretrained(str(tmp_path / "p"))
    assert loaded.data_types == ("image", "xy")
    torch.testing.assert_close(loaded.anchors("xy", pts), model.anchors("xy", pts))


def test_texts_are_checked_and_long_ones_cut_with_one_warning():
    model = text_model()
    with pytest.raises(ValueError, match="non-empty strings; item 1 is '  '"):
        model.latents("text", ["a zero", "  "])
    enc = build("small_text_encoder", latent_dim=Q, width=16, layers=1, max_length=8)
    with pytest.warns(UserWarning, match="longer than 8 tokens are cut to 8 .said once"):
        cut = enc(["a very long caption indeed", "short"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc(["another very long caption"])  # said once per encoder
    torch.testing.assert_close(cut[0], enc(["a very "])[0])  # the start token and the first 7 bytes
