"""Unconstrained L-BFGS for the students' convex losses (softmax regression on soft targets).

Hand-written rather than scipy's: scipy's L-BFGS-B spends ~70 ms per iteration on bound handling at a
million parameters, more than the loss itself; this loop is a few in-place vector operations per step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["lbfgs"]

FloatArray = NDArray[np.float64]


class _History:
    """The last ``memory`` steps ``s`` and gradient changes ``y``, in preallocated slots, and the two-loop
    recursion that turns a gradient into a search direction with them."""

    def __init__(self, memory: int, size: int) -> None:
        self.memory = memory
        self.s = np.empty((memory, size))
        self.y = np.empty((memory, size))
        self.rho = np.zeros(memory)
        self.alphas = np.zeros(memory)
        self.stored: list[int] = []  # slots, oldest first
        self.scratch = np.empty(size)

    def axpy(self, a: float, v: FloatArray, out: FloatArray) -> None:
        """``out += a * v`` with numpy (OpenBLAS's daxpy stalls on a busy machine even with one thread)."""
        np.multiply(v, a, out=self.scratch)
        np.add(out, self.scratch, out=out)

    def direction(self, g: FloatArray, q: FloatArray) -> float:
        """Write the descent direction for gradient ``g`` into ``q``; returns the slope ``g @ q`` (< 0)."""
        np.copyto(q, g)
        for slot in reversed(self.stored):
            self.alphas[slot] = self.rho[slot] * float(self.s[slot] @ q)
            self.axpy(-self.alphas[slot], self.y[slot], q)
        if self.stored:
            last = self.stored[-1]
            q *= 1.0 / (self.rho[last] * float(self.y[last] @ self.y[last]))
        else:
            q *= 1.0 / max(1.0, float(np.sqrt(g @ g)))
        for slot in self.stored:
            beta = self.rho[slot] * float(self.y[slot] @ q)
            self.axpy(self.alphas[slot] - beta, self.s[slot], q)
        q *= -1.0
        slope = float(g @ q)
        if slope >= 0:  # not a descent direction (rounding): forget the history, go downhill
            self.stored.clear()
            np.multiply(g, -1.0 / max(1.0, float(np.sqrt(g @ g))), out=q)
            slope = float(g @ q)
        return slope

    def remember(self, x_new: FloatArray, x: FloatArray, g_new: FloatArray, g: FloatArray) -> None:
        """Keep the step and the gradient change (dropping the oldest; skipped where curvature is too small)."""
        if len(self.stored) == self.memory:
            self.stored.pop(0)
        slot = next(i for i in range(self.memory) if i not in self.stored)
        s_vec, y_vec = self.s[slot], self.y[slot]
        np.subtract(x_new, x, out=s_vec)
        np.subtract(g_new, g, out=y_vec)
        sy = float(s_vec @ y_vec)
        if sy > 1e-10 * float(y_vec @ y_vec):
            self.rho[slot] = 1.0 / sy
            self.stored.append(slot)


def lbfgs(
    fun: Callable[[FloatArray, FloatArray], float],
    x0: FloatArray,
    *,
    max_iter: int,
    tol: float,
    memory: int = 8,
) -> tuple[FloatArray, float, int, bool]:
    """Unconstrained L-BFGS (two-loop recursion, backtracking Armijo search) for a smooth convex loss.

    ``fun(x, grad)`` returns the loss and writes the gradient into ``grad``. Hand-written because
    scipy's L-BFGS-B spends ~70 ms per iteration on bound handling at a million parameters, more than
    the loss itself; this loop is a few in-place vector operations per step. Returns (x, loss,
    iterations, converged); converged: the largest gradient entry fell below ``tol`` or the loss
    stopped changing.
    """
    size = len(x0)
    x = np.array(x0, dtype=np.float64)
    x_new = np.empty(size)
    g = np.empty(size)
    g_new = np.empty(size)
    q = np.empty(size)
    history = _History(memory, size)

    f = fun(x, g)
    iterations = 0
    converged = max(float(g.max()), -float(g.min())) <= tol
    while not converged and iterations < max_iter:
        slope = history.direction(g, q)
        step = 1.0
        for _ in range(30):
            np.copyto(x_new, x)
            history.axpy(step, q, x_new)
            f_new = fun(x_new, g_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease along the direction: as good as it gets in floating point
        iterations += 1
        history.remember(x_new, x, g_new, g)
        change = f - f_new
        x, x_new = x_new, x
        g, g_new = g_new, g
        f = f_new
        converged = max(float(g.max()), -float(g.min())) <= tol or change <= 1e-12 * max(1.0, abs(f))
    return x, f, iterations, converged
