"""A small deterministic text embedding for the sample collection.

The MathPal feature pipeline stores a sentence-embedding vector with every point.
The demo needs vectors of the same kind (for Qdrant and for near-duplicate search)
without downloading an embedding model, so we hash character trigrams into a fixed
number of buckets: similar texts get similar vectors, identical texts equal ones.
"""

from __future__ import annotations

import math
import zlib

EMBEDDING_DIM = 128


def hash_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """L2-normalised bag of hashed character trigrams of the case-folded text."""
    folded = " ".join(text.casefold().split())
    vector = [0.0] * dim
    for i in range(max(len(folded) - 2, 1)):
        gram = folded[i : i + 3].encode("utf-8")
        h = zlib.crc32(gram)
        vector[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
