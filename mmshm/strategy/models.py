"""Pricing models: (reservation offset, half-spread) in bp of fair value.

Every model returns a :class:`ModelQuote`: the reservation price offset ``res_bp``
(negative when long: quotes lean toward selling) and the half-spread ``half_bp`` around
it, so bid = fv·(1 + (res - half)/1e4) and ask = fv·(1 + (res + half)/1e4). Units are
those of :mod:`mmshm.strategy.params`: sigma in bp/sqrt(s), gamma per (bp·unit),
k per bp, A per second, inventory q in units.
"""
from __future__ import annotations

import math
from typing import NamedTuple


class ModelQuote(NamedTuple):
    res_bp: float
    half_bp: float


def fixed_spread(half_spread_bp: float) -> ModelQuote:
    """A constant half-spread; inventory skew is added by the caller for every model."""
    return ModelQuote(0.0, half_spread_bp)


def avellaneda_stoikov(q: float, sigma_bp: float, gamma: float, k: float, horizon_s: float) -> ModelQuote:
    """Avellaneda–Stoikov (2008).

    reservation r = s - q·γ·σ²·(T-t); total spread γσ²(T-t) + (2/γ)·ln(1 + γ/k), split evenly.
    """
    s2t = sigma_bp * sigma_bp * horizon_s
    res = -q * gamma * s2t
    spread = gamma * s2t + (2.0 / gamma) * math.log(1.0 + gamma / k)
    return ModelQuote(res, 0.5 * spread)


def glft_coefficients(sigma_bp: float, gamma: float, a: float, k: float, delta: float) -> tuple[float, float]:
    """(c1, c2) of the Guéant–Lehalle–Fernandez-Tapia asymptotic closed form (Guéant 2017).

    c1 = 1/(γΔ)·ln(1 + γΔ/k);  c2 = sqrt( γσ² / (2AΔk) · (1 + γΔ/k)^(k/(γΔ) + 1) ).
    """
    gd = gamma * delta
    c1 = math.log(1.0 + gd / k) / gd
    c2 = math.sqrt(gamma * sigma_bp * sigma_bp / (2.0 * a * delta * k) * math.pow(1.0 + gd / k, k / gd + 1.0))
    return c1, c2


def glft(q: float, sigma_bp: float, gamma: float, a: float, k: float, delta: float) -> ModelQuote:
    """Guéant–Lehalle–Fernandez-Tapia approximation.

    δ_bid(q) = c1 + (2q + Δ)/2 · c2 and δ_ask(q) = c1 - (2q - Δ)/2 · c2, i.e. a half-spread
    c1 + Δ·c2/2 around a reservation offset -q·c2.
    """
    c1, c2 = glft_coefficients(sigma_bp, gamma, a, k, delta)
    return ModelQuote(-q * c2, c1 + 0.5 * delta * c2)
