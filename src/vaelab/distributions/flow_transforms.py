"""The invertible layers of the flow posteriors (`vaelab.distributions.flows`), each a
`torch.distributions.Transform` with its log|det J| and its inverse: planar (Rezende & Mohamed 2015), inverse
autoregressive through a MADE (Kingma et al. 2016; Germain et al. 2015) and triangular Sylvester (van den Berg
et al. 2018). An inverse at a point q did not just draw: a planar layer by a scalar root (bisection, then one
Newton step that carries the implicit-function gradient), an IAF step in D passes, a Sylvester layer by D scalar
roots, last coordinate first."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Transform, constraints

FORGET_BIAS = 2.0  # IAF: s starts near +2, sigma = sigmoid(s) near 0.88, close to the identity (Kingma 2016)
BISECTION_STEPS = 50  # halvings of a planar inverse's bracket before its Newton step
TINY = 1e-12

_VECTOR = constraints.independent(constraints.real, 1)


def constrain(u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u_hat = u + (m(w^T u) - w^T u) w / |w|^2 with m(a) = -1 + softplus(a), and c = w^T u_hat = m(w^T u) > -1
    (Rezende & Mohamed 2015, appendix A.1): [..., D] and [..., 1], for any number of layers at once."""
    wu = (w * u).sum(-1, keepdim=True)
    c = F.softplus(wu) - 1.0
    return u + (c - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(TINY), c


def solve_tanh_root(
    t: torch.Tensor, r: torch.Tensor | float, c: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """The a with a + c tanh(r a + b) = t, for r c > -1 (so the left side increases in a; its root lies within
    t -+ |c|): bisection without gradient, then one Newton step at the root, which carries the implicit
    function's gradient in t, r, c and b."""
    with torch.no_grad():
        t0, r0, c0, b0 = (v.detach() if torch.is_tensor(v) else v for v in (t, r, c, b))
        lo, hi = t0 - c0.abs(), t0 + c0.abs()
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            below = mid + c0 * torch.tanh(r0 * mid + b0) < t0
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        a = 0.5 * (lo + hi)
    s = torch.tanh(r * a + b)
    return a - (a + c * s - t) / (1.0 + r * c * (1.0 - s * s))


class PlanarTransform(Transform):
    """y = z + u_hat tanh(w^T z + b) with per-datum u_hat, w [..., D], b and c = w^T u_hat > -1 [..., 1];
    log|det J| = log(1 + c tanh'(w^T z + b)) (Rezende & Mohamed 2015, eq. 10-12). `PlanarTransform.of(u, w, b)`
    makes one from an unconstrained u."""

    domain = _VECTOR
    codomain = _VECTOR
    bijective = True

    def __init__(
        self, u_hat: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: torch.Tensor, cache_size: int = 1
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.u, self.w, self.b, self.c = u_hat, w, b, c
        self._last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    @classmethod
    def of(cls, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> PlanarTransform:
        """The invertible layer of u, w [..., D] and b [...]: u projected by `constrain`."""
        u_hat, c = constrain(u, w)
        return cls(u_hat, w, b[..., None], c)

    def push(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) [..., D], without the inverse's cache."""
        return z + self.u * torch.tanh((z * self.w).sum(-1, keepdim=True) + self.b)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.tanh((x * self.w).sum(-1, keepdim=True) + self.b)
        self._last = (x, s)  # log_abs_det_jacobian(x, y) of this draw reuses tanh
        return x + self.u * s

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        # w^T y = a + c tanh(a + b) with a = w^T z
        a = solve_tanh_root((y * self.w).sum(-1, keepdim=True), 1.0, self.c, self.b)
        return y - self.u * torch.tanh(a + self.b)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        last_x, s = self._last
        if x is not last_x or s is None:
            s = torch.tanh((x * self.w).sum(-1, keepdim=True) + self.b)
        return torch.log1p(self.c * (1.0 - s * s)).squeeze(-1)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask [out, in] (MADE's connectivity)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """(m, s) [..., D] each from z [..., D] and a context h [..., F]: output i sees only the z_j earlier in
    `order` (and h), through two masked ELU layers; hidden units of degree 0 see the context alone.

    Args:
        dim: D.
        width: hidden units per layer.
        context: the context's width F.
        reverse: order the variables D, ..., 1 instead of 1, ..., D.
    """

    def __init__(self, dim: int, width: int, context: int, reverse: bool = False) -> None:
        super().__init__()
        order = torch.arange(1, dim + 1)
        order = order.flip(0) if reverse else order
        self.register_buffer("order", order, persistent=False)
        hidden = torch.arange(width) % dim  # degrees 0 .. D-1
        self.inp = MaskedLinear(hidden[:, None] >= order[None, :])
        self.context = nn.Linear(context, width)
        self.hid = MaskedLinear(hidden[:, None] >= hidden[None, :])
        self.out = MaskedLinear(torch.cat([order, order])[:, None] > hidden[None, :])

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = F.elu(self.hid(F.elu(self.inp(z) + self.context(h))))
        m, s = self.out(a).chunk(2, dim=-1)
        return m, s + FORGET_BIAS


class IAFTransform(Transform):
    """y = sigma * z + (1 - sigma) * m with (m, s) = MADE(z, h), sigma = sigmoid(s): the numerically stable IAF
    step (Kingma et al. 2016, algorithm 1); its Jacobian is triangular in the MADE's order, log|det| = sum log
    sigma."""

    domain = _VECTOR
    codomain = _VECTOR
    bijective = True

    def __init__(self, made: MADE, h: torch.Tensor, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.made, self.h = made, h
        self._last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    def step(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(z) [..., D] and log|det J| [...]."""
        m, s = self.made(z, self.h)
        sigma = torch.sigmoid(s)
        return sigma * z + (1.0 - sigma) * m, F.logsigmoid(s).sum(-1)

    def push(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) [..., D], without the inverse's cache."""
        return self.step(z)[0]

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y, ldj = self.step(x)
        self._last = (x, ldj)  # log_abs_det_jacobian(x, y) of this draw needs no second MADE pass
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(y)
        for k in range(1, y.shape[-1] + 1):  # pass k solves for the k-th variable in the order
            m, s = self.made(x, self.h)
            sigma = torch.sigmoid(s)
            x = torch.where(self.made.order == k, (y - (1.0 - sigma) * m) / sigma, x)  # the later ones stay 0
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        last_x, ldj = self._last
        if x is last_x and ldj is not None:
            return ldj
        return F.logsigmoid(self.made(x, self.h)[1]).sum(-1)


class SylvesterTransform(Transform):
    """y = z + P R tanh(R~ P^T z + b) with per-datum upper-triangular R, R~ [..., D, D] whose diagonals' product
    exceeds -1, b [..., D], and P the identity or the reversal of the D coordinates (`reverse`); the Jacobian of
    P^T z -> P^T y is upper triangular: log|det J| = sum_i log(1 + R_ii R~_ii tanh'(a_i)), a = R~ P^T z + b."""

    domain = _VECTOR
    codomain = _VECTOR
    bijective = True

    def __init__(
        self, r: torch.Tensor, r_tilde: torch.Tensor, b: torch.Tensor, reverse: bool, cache_size: int = 1
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.r, self.rt, self.b, self.reverse = r, r_tilde, b, reverse
        self.diag = torch.diagonal(r, dim1=-2, dim2=-1) * torch.diagonal(r_tilde, dim1=-2, dim2=-1)
        self._last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    def _perm(self, z: torch.Tensor) -> torch.Tensor:
        return z.flip(-1) if self.reverse else z  # P is its own inverse and transpose

    def _pre(self, v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ij,...j->...i", self.rt, v) + self.b

    def push(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) [..., D], without the inverse's cache."""
        h = torch.tanh(self._pre(self._perm(z)))
        return z + self._perm(torch.einsum("...ij,...j->...i", self.r, h))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        a = self._pre(self._perm(x))
        self._last = (x, a)  # log_abs_det_jacobian(x, y) of this draw reuses a
        return x + self._perm(torch.einsum("...ij,...j->...i", self.r, torch.tanh(a)))

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        w = self._perm(y)  # w = v + R tanh(R~ v + b), v = P^T z: solve v_D first, then v_D-1, ...
        d = w.shape[-1]
        shape = torch.broadcast_shapes(w.shape, self.b.shape)
        v: list[torch.Tensor] = [w.new_zeros(())] * d
        h: list[torch.Tensor] = [w.new_zeros(())] * d
        for i in reversed(range(d)):
            later = range(i + 1, d)
            c = self.b[..., i] + sum((self.rt[..., i, k] * v[k] for k in later), w.new_zeros(shape[:-1]))
            rest = sum((self.r[..., i, j] * h[j] for j in later), w.new_zeros(shape[:-1]))
            r_ii, rt_ii = self.r[..., i, i], self.rt[..., i, i]
            # v_i + R_ii tanh(R~_ii v_i + c) = w_i - rest
            v[i] = solve_tanh_root((w[..., i] - rest).expand(shape[:-1]), rt_ii, r_ii, c)
            h[i] = torch.tanh(rt_ii * v[i] + c)
        return self._perm(torch.stack(v, -1))

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        last_x, a = self._last
        if x is not last_x or a is None:
            a = self._pre(self._perm(x))
        s = torch.tanh(a)
        return torch.log1p(self.diag * (1.0 - s * s)).sum(-1)
