"""Predicates for config values, shared by the config and dataset checks."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

MAX_SEED = 2**32 - 1  # np.random.seed, scikit-learn's random_state and keras.utils.set_random_seed take 32-bit seeds


def is_int(value: Any) -> TypeGuard[int]:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> TypeGuard[float]:
    """True for a finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
