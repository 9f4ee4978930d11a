"""Synthetic click logs in the exact Kaggle Criteo ``train.txt`` format, generated fast.

Rows are ``label<TAB>I1..I13<TAB>C1..C26`` with empty fields for missing values, like the
Kaggle file. Text is formatted with numpy only (no per-row Python): every row is laid out in a
fixed-width byte matrix where unused bytes are 0, and the zeros are dropped at the end, which
gives variable-width integers and empty missing fields at memory speed. That is what makes a
45-million-row file (about 11 GB) practical to generate for the preprocessing benchmark.

The distributions imitate Criteo's: a Zipf-like (log-uniform) popularity within each field,
with a support chosen so that a file of the Kaggle size shows each field's Kaggle number of
distinct values (C3 about 10 million, C9 three; 33.8 million in all), which is what the
preprocessing's hash tables and memory depend on;
per-field missing rates, heavy-tailed non-negative counts (I2 can be negative) and a click
probability that depends on a few features, so that a model has something to learn.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["CARDINALITIES", "write_criteo_tsv", "format_rows"]

# Distinct values per categorical field in the Kaggle train.txt (C1..C26).
CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
# Approximate missing rates of I1..I13 and C1..C26 in the Kaggle data.
_I_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22)
_C_MISSING = (0.0,) * 2 + (0.03,) + (0.03,) + (0.0,) + (0.12,) + (0.0,) * 12 + (0.44,) * 2
_C_MISSING = _C_MISSING + (0.03, 0.0, 0.44, 0.03, 0.44, 0.44)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_INT_WIDTH = 11  # sign + up to 10 digits
_CAT_WIDTH = 8


def _field_hash(rank: np.ndarray, field: int) -> np.ndarray:
    """A bijection of ``uint32`` per field: popularity rank -> 32-bit 'hash'."""
    x = rank.astype(np.uint32) * np.uint32(2654435761) + np.uint32(
        (0x9E3779B9 * (field + 1)) & 0xFFFFFFFF
    )
    x ^= x >> np.uint32(15)
    return x * np.uint32(0x85EBCA6B)


def _support(card: int, n_ref: int = 45_840_617) -> int:
    """Support size M of the log-uniform rank distribution ``P(r) ~ 1/r`` on ``[1, M)`` for
    which ``n_ref`` draws show about ``card`` distinct values, like the Kaggle file.

    With ``c = n / ln M`` the expected number of distinct ranks is about ``M`` if ``c >= M``,
    else ``c (1 + ln(M / c))`` (ranks below c are all seen, rank r > c with chance c/r).
    """

    def distinct(m: float) -> float:
        c = n_ref / np.log(m)
        return m if c >= m else c * (1.0 + np.log(m / c))

    lo, hi = float(card), float(card) * 1e4
    if distinct(lo) >= card:
        return int(card)
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if distinct(mid) < card else (lo, mid)
    return int(hi)


def sample_rows(n: int, rng: np.random.Generator, cardinality_scale: float = 1.0):
    """``(label int8 [n], ints int64 [n, 13], ints_missing [n, 13], cats uint32 [n, 26],
    cats_missing [n, 26])`` with Criteo-like statistics."""
    ints = np.empty((n, 13), np.int64)
    for j in range(13):
        scale = 10.0 ** (1 + j % 4)
        ints[:, j] = np.floor(rng.pareto(1.2, n) * scale / 10).astype(np.int64)
    ints[:, 1] -= rng.integers(0, 4, n) * (rng.random(n) < 0.1)  # I2 takes -3..-1 too
    ints_missing = rng.random((n, 13)) < np.asarray(_I_MISSING)
    ranks = np.empty((n, 26), np.int64)
    for j, card in enumerate(CARDINALITIES):
        support = _support(max(4, int(card * cardinality_scale)))
        ranks[:, j] = np.minimum(np.exp(rng.random(n) * np.log(support)), support - 1)
    cats = np.empty((n, 26), np.uint32)
    for j in range(26):
        cats[:, j] = _field_hash(ranks[:, j], j)
    cats_missing = rng.random((n, 26)) < np.asarray(_C_MISSING)
    # Clicks: ~25% on average, depending on the values of C1, C6, C9, C14 and on I1.
    logit = (
        -2.0
        + 1.5 * (ranks[:, 0] % 2 == 0)
        - 1.2 * (ranks[:, 5] % 2 == 0)
        + 1.0 * (ranks[:, 13] % 2 == 1)
        + 1.0 * ((ints[:, 0] < 2) & ~ints_missing[:, 0])
        - 0.8 * (ranks[:, 8] == 1)
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return label, ints, ints_missing, cats, cats_missing


def _format_ints(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``[n, k, 11]`` uint8: decimal digits right-aligned, unused bytes 0."""
    n, k = values.shape
    out = np.zeros((n, k, _INT_WIDTH), np.uint8)
    neg = values < 0
    v = np.abs(values)
    for pos in range(_INT_WIDTH - 1, 0, -1):
        digit = (v % 10).astype(np.uint8) + 48
        used = (v > 0) | (pos == _INT_WIDTH - 1)
        out[:, :, pos] = np.where(used, digit, 0)
        v //= 10
    # The sign goes just before the first digit: the last zero byte before the digits.
    first = _INT_WIDTH - np.count_nonzero(out, axis=2)
    np.put_along_axis(
        out,
        np.maximum(first - 1, 0)[..., None],
        np.where(neg, 45, 0)[..., None].astype(np.uint8),
        axis=2,
    )
    out[missing] = 0
    return out


def _format_hex(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``[n, k, 8]`` uint8 lowercase hex, all 0 when missing."""
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    nib = (values[..., None] >> shifts) & np.uint32(15)
    out = _HEX[nib]
    out[missing] = 0
    return out


def format_rows(label, ints, ints_missing, cats, cats_missing, sep: bytes = b"\t") -> bytes:
    """The rows as ``train.txt`` bytes (each line ends with ``\\n``)."""
    n = len(label)
    width = 2 + 13 * (_INT_WIDTH + 1) + 26 * (_CAT_WIDTH + 1)
    buf = np.zeros((n, width), np.uint8)
    buf[:, 0] = label.astype(np.uint8) + 48
    s = ord(sep)
    pos = 1
    ib = _format_ints(ints, ints_missing)
    for j in range(13):
        buf[:, pos] = s
        buf[:, pos + 1 : pos + 1 + _INT_WIDTH] = ib[:, j]
        pos += 1 + _INT_WIDTH
    cb = _format_hex(cats, cats_missing)
    for j in range(26):
        buf[:, pos] = s
        buf[:, pos + 1 : pos + 1 + _CAT_WIDTH] = cb[:, j]
        pos += 1 + _CAT_WIDTH
    buf[:, pos] = 10
    flat = buf.reshape(-1)
    return flat[flat != 0].tobytes()


def write_criteo_tsv(
    path: str | os.PathLike[str],
    n_rows: int,
    seed: int = 0,
    chunk_rows: int = 200_000,
    cardinality_scale: float = 1.0,
) -> int:
    """Write ``n_rows`` synthetic rows in Kaggle ``train.txt`` format; returns bytes written.

    Written to ``path + ".tmp"`` and renamed, so an interrupted run leaves no partial file.
    ``cardinality_scale`` shrinks every field's number of distinct values (small test files).
    """
    rng = np.random.default_rng(seed)
    tmp = os.fspath(path) + ".tmp"
    size = 0
    with open(tmp, "wb") as f:
        for start in range(0, n_rows, chunk_rows):
            m = min(chunk_rows, n_rows - start)
            data = format_rows(*sample_rows(m, rng, cardinality_scale))
            f.write(data)
            size += len(data)
    os.replace(tmp, path)
    return size
