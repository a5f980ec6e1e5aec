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
    scratch = np.empty(size)
    s_hist = np.empty((memory, size))
    y_hist = np.empty((memory, size))
    rho = np.zeros(memory)
    alphas = np.zeros(memory)
    stored: list[int] = []  # slots of s_hist / y_hist, oldest first

    def axpy(a: float, v: FloatArray, out: FloatArray) -> None:
        """``out += a * v`` with numpy (OpenBLAS's daxpy stalls on a busy machine even with one thread)."""
        np.multiply(v, a, out=scratch)
        np.add(out, scratch, out=out)

    f = fun(x, g)
    iterations = 0
    converged = max(float(g.max()), -float(g.min())) <= tol
    while not converged and iterations < max_iter:
        np.copyto(q, g)
        for slot in reversed(stored):
            alphas[slot] = rho[slot] * float(s_hist[slot] @ q)
            axpy(-alphas[slot], y_hist[slot], q)
        if stored:
            last = stored[-1]
            q *= 1.0 / (rho[last] * float(y_hist[last] @ y_hist[last]))
        else:
            q *= 1.0 / max(1.0, float(np.sqrt(g @ g)))
        for slot in stored:
            beta = rho[slot] * float(y_hist[slot] @ q)
            axpy(alphas[slot] - beta, s_hist[slot], q)
        q *= -1.0  # the search direction
        slope = float(g @ q)
        if slope >= 0:  # not a descent direction (rounding): forget the history, go downhill
            stored.clear()
            np.multiply(g, -1.0 / max(1.0, float(np.sqrt(g @ g))), out=q)
            slope = float(g @ q)
        step = 1.0
        for _ in range(30):
            np.copyto(x_new, x)
            axpy(step, q, x_new)
            f_new = fun(x_new, g_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease along the direction: as good as it gets in floating point
        iterations += 1
        if len(stored) == memory:
            stored.pop(0)
        slot = next(i for i in range(memory) if i not in stored)
        s_vec, y_vec = s_hist[slot], y_hist[slot]
        np.subtract(x_new, x, out=s_vec)
        np.subtract(g_new, g, out=y_vec)
        sy = float(s_vec @ y_vec)
        if sy > 1e-10 * float(y_vec @ y_vec):
            rho[slot] = 1.0 / sy
            stored.append(slot)
        change = f - f_new
        x, x_new = x_new, x
        g, g_new = g_new, g
        f = f_new
        converged = max(float(g.max()), -float(g.min())) <= tol or change <= 1e-12 * max(1.0, abs(f))
    return x, f, iterations, converged
