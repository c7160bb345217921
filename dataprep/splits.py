"""Assign problems to train / validation / test by a salted hash of the question.

A hash (not a shuffle) makes the split a property of the problem itself: duplicates
land together, a re-export gives the same split, and adding new problems to the
collection never moves an existing one into another split, so a test problem can
never leak into a later training set.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "validation", "test")
# Changing the salt reshuffles every split: bump it only on purpose.
SPLIT_SALT = "mathpal-split-v1"


def split_bucket(key: str, salt: str = SPLIT_SALT) -> float:
    """A uniform number in [0, 1) derived from the key (stable across runs and machines)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless the two fractions leave a non-empty share for training."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in [0, 1) "
            "and leave room for training"
        )


def split_for_bucket(bucket: float, val_fraction: float, test_fraction: float) -> str:
    """The split of a problem whose ``split_bucket`` is ``bucket`` (fractions already checked)."""
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "validation"
    return "train"
