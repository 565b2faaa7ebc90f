"""The planted law of the watch ratio given (user, video): its parameters (mu, pi0), draws from
it, and its exact conditional median and mean (the oracle)."""

from __future__ import annotations

import math

import numpy as np

from grmodel.data.kuairec.synth.config import SynthConfig
from grmodel.data.kuairec.synth.world import World


def pair_params(config: SynthConfig, world: World, user: np.ndarray, item: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, pi0) of the planted law for each (user position, item position) pair."""
    tags = world.item_tags[item]
    has = tags >= 0
    affinity = np.zeros(len(user))
    for k in range(tags.shape[1]):
        affinity += np.where(has[:, k], world.taste[user, np.maximum(tags[:, k], 0)], 0.0)
    affinity /= np.maximum(has.sum(1), 1)
    mu = (config.base_log_ratio + world.user_effect[user] + world.item_effect[item]
          + config.taste_weight * affinity)
    logit = config.zero_logit + world.user_zero_effect[user] + config.zero_taste_weight * affinity
    return mu, 1.0 / (1.0 + np.exp(-logit))


def draw_ratio(config: SynthConfig, mu: np.ndarray, pi0: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    n = len(mu)
    body = rng.standard_exponential(n) ** (1.0 / config.weibull_shape)
    body = np.where(rng.random(n) < config.skip_share, config.skip_scale * body, body)
    # Inverse CDF of the truncated Pareto factor.
    kept = 1.0 - config.tail_max ** -config.tail_alpha
    tail = config.tail_start * (1.0 - rng.random(n) * kept) ** (-1.0 / config.tail_alpha)
    is_tail = rng.random(n) < config.tail_share
    is_zero = rng.random(n) < pi0
    return np.where(is_zero, 0.0, np.exp(mu) * np.where(is_tail, tail, body))


def standard_cdf(config: SynthConfig, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H(s) = P(X <= exp(s)) of the non-zero part at mu = 0, and its derivative dH/ds."""
    k, w, rho, alpha = (config.weibull_shape, config.skip_share, config.tail_share,
                        config.tail_alpha)

    def weibull(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        power = np.exp(k * x)
        return -np.expm1(-power), k * power * np.exp(-power)

    main, d_main = weibull(s)
    skip, d_skip = weibull(s - math.log(config.skip_scale))
    kept = 1.0 - config.tail_max ** -alpha
    log_max = math.log(config.tail_max)
    beyond = np.clip(s - math.log(config.tail_start), 0.0, log_max)
    tail = -np.expm1(-alpha * beyond) / kept
    d_tail = np.where((beyond > 0) & (beyond < log_max), alpha * np.exp(-alpha * beyond) / kept,
                      0.0)
    h = (1 - rho) * (w * skip + (1 - w) * main) + rho * tail
    dh = (1 - rho) * (w * d_skip + (1 - w) * d_main) + rho * d_tail
    return h, dh


def _standard_quantile(config: SynthConfig, q: np.ndarray) -> np.ndarray:
    """s with H(s) = q for 0 < q < 1: a fine grid's interpolation, then Newton steps on
    log H (linear in s in the far left tail, so the steps converge there too)."""
    k = config.weibull_shape
    # Below `low`, H(s) < 1e-14; above `high`, 1 - H(s) is negligible.
    scale = (1 - config.skip_share) + config.skip_share * config.skip_scale ** -k
    low = (math.log(1e-14) - math.log(scale)) / k
    high = max(math.log(config.tail_start * config.tail_max), 0.0) + 40.0 / k
    grid = np.linspace(low, high, 1 << 18)
    s = np.interp(q, standard_cdf(config, grid)[0], grid)
    for _ in range(2):  # the grid is within ~1e-8; Newton doubles the digits per step
        h, dh = standard_cdf(config, s)
        step = np.where(dh > 0, h * (np.log(np.maximum(h, 1e-300)) - np.log(q))
                        / np.where(dh > 0, dh, 1.0), 0.0)
        s = s - step
    return s


def mixture_mean(config: SynthConfig) -> float:
    """E[X] of the non-zero part at mu = 0."""
    weibull = math.gamma(1.0 + 1.0 / config.weibull_shape)
    body = (1 - config.skip_share) + config.skip_share * config.skip_scale
    alpha, top = config.tail_alpha, config.tail_max
    tail = (config.tail_start * alpha / (alpha - 1.0) * (1.0 - top ** (1.0 - alpha))
            / (1.0 - top**-alpha))
    return (1 - config.tail_share) * body * weibull + config.tail_share * tail


def oracle_ratio(config: SynthConfig, mu: np.ndarray, pi0: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact conditional (median, mean) of the continuous watch ratio given (mu, pi0)."""
    q = (0.5 - pi0) / (1.0 - pi0)
    median = np.zeros(len(mu))
    positive = q > 0
    median[positive] = np.exp(mu[positive] + _standard_quantile(config, q[positive]))
    return median, (1.0 - pi0) * np.exp(mu) * mixture_mean(config)

