"""The paper's toy model (Figure 5a, Appendix D.2): three vectors fit to a target tensor product.

a, b, c (dimension 10, standard normal init) are trained by gradient descent on
`0.5 * mean((a*⊗b*⊗c* - a⊗b⊗c)^2)`. Trained free, the loss plateaus and then drops suddenly;
clamping c to its target shortens the plateau; clamping b and c leaves a smooth exponential
curve. Progress measures: `1 - cos^2(a, a*)` and the loss with b, c set to (plus or minus)
their targets.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Clamp = Literal["none", "c", "bc"]


def _loss(a, b, c, target):
    return 0.5 * jnp.mean((target - jnp.einsum("i,j,k->ijk", a, b, c)) ** 2)


def train_toy(clamp: Clamp = "none", steps: int = 2000, lr: float = 0.2, dim: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Gradient descent on the toy model with some vectors clamped to their targets; returns curves."""
    ka, kb, kc, ta, tb, tc = jax.random.split(jax.random.PRNGKey(seed), 6)
    a_t, b_t, c_t = (jax.random.normal(k, (dim,)) for k in (ta, tb, tc))
    target = jnp.einsum("i,j,k->ijk", a_t, b_t, c_t)
    a, b, c = (jax.random.normal(k, (dim,)) for k in (ka, kb, kc))
    if clamp in ("c", "bc"):
        c = c_t
    if clamp == "bc":
        b = b_t
    trainable = {"none": (0, 1, 2), "c": (0, 1), "bc": (0,)}[clamp]

    def step(params, _):
        grads = jax.grad(lambda p: _loss(*p, target))(params)
        params = tuple(p - lr * g if i in trainable else p for i, (p, g) in enumerate(zip(params, grads)))
        a, b, c = params
        cos2 = jnp.dot(a, a_t) ** 2 / (jnp.dot(a, a) * jnp.dot(a_t, a_t))
        perfected = jnp.minimum(_loss(a, b_t, c_t, target), _loss(a, -b_t, -c_t, target))
        return params, (_loss(a, b, c, target), 1 - cos2, perfected)

    _, (loss, misalign, perfected) = jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps))((a, b, c))
    return {"loss": np.asarray(loss), "one_minus_cos2_a": np.asarray(misalign), "loss_with_b_c_perfect": np.asarray(perfected)}
