"""JAX functions with hand-written derivative rules, checked by experiments/jax-rules.yaml.

- ``logsumexp``: shifted by its maximum so that it never overflows, with a
  ``custom_jvp`` rule (the tangent is softmax(x) . t, computed just as stably);
- ``clip_by_norm``: the gradient clipping of optimizers, x scaled down to norm
  at most ``MAX_NORM``, with a ``custom_vjp`` rule;
- ``clipped_loss``: a plain function calling it, the way a training step does.
"""

import jax
import jax.numpy as jnp

MAX_NORM = 1.0


@jax.custom_jvp
def logsumexp(x):
    m = jnp.max(x)
    return m + jnp.log(jnp.sum(jnp.exp(x - m)))


@logsumexp.defjvp
def logsumexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    e = jnp.exp(x - jnp.max(x))
    return logsumexp(x), jnp.sum(e * t) / jnp.sum(e)


@jax.custom_vjp
def clip_by_norm(x):
    return x * jnp.minimum(1.0, MAX_NORM / jnp.linalg.norm(x))


def clip_by_norm_fwd(x):
    norm = jnp.linalg.norm(x)
    return clip_by_norm(x), (x, norm)


def clip_by_norm_bwd(saved, g):
    x, norm = saved
    # below the threshold the clip is the identity; above it, x / |x| scaled to MAX_NORM,
    # whose Jacobian projects out the radial direction
    u = x / norm
    clipped = MAX_NORM / norm * (g - u * jnp.sum(u * g))
    return (jnp.where(norm > MAX_NORM, clipped, g),)


clip_by_norm.defvjp(clip_by_norm_fwd, clip_by_norm_bwd)


def clipped_loss(w, x):
    return jnp.sum(jnp.tanh(x @ clip_by_norm(w)))
