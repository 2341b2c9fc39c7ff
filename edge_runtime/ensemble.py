"""x8 self-ensemble (`edge-sr --ensemble`): a frame through the model in each of its 8 turns and mirror
images, each output turned back, the 8 averaged. A net is not exactly equivariant to these symmetries, so
its errors in the 8 differ and partly cancel, INT8 rounding included: a higher PSNR for 8 times the work
(`benchmarks/self_ensemble.py`), for photos rather than streams.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends import Upscaler

# (mirrored, quarter turns): the four that keep a frame's shape first, then the four that swap its sides, so
# a runtime that reallocates at each new shape (LiteRT) does so twice per frame, not eight times.
SYMMETRIES = ((False, 0), (False, 2), (True, 1), (True, 3), (False, 1), (False, 3), (True, 0), (True, 2))


def turn(y: np.ndarray, mirrored: bool, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(y.T if mirrored else y, turns))


def turn_back(y: np.ndarray, mirrored: bool, turns: int) -> np.ndarray:
    back = np.rot90(y, -turns)
    return back.T if mirrored else back


class SelfEnsemble(Upscaler):
    """An upscaler whose output is `model`'s mean over the 8 symmetries of the input frame."""

    whole_limit = float("inf")  # the wrapped model tiles a large frame itself

    def __init__(self, model: Upscaler):
        self.model = model

    def _run(self, y: np.ndarray) -> np.ndarray:
        total = None
        for mirrored, turns in SYMMETRIES:
            out = turn_back(self.model.run(turn(y, mirrored, turns)), mirrored, turns).astype(np.float64)
            total = out if total is None else total + out
        return total / len(SYMMETRIES)
