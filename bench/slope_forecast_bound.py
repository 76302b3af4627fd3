"""The best any fit can do: the Cramér-Rao bound on the failure time of the slope corpus.

For each failure record of ``hardware_sim.slope_corpus`` with noise up to 0.05 mm (the
scope of the targets), the Fisher information of hourly bins over the fit window gives the
smallest standard deviation an unbiased estimate of the failure time can have, ``lead``
hours before failure, for the model the forecast rule fits (steady creep plus Voight's
accelerating creep, five parameters). For alpha unknown (as the rule must) and alpha known
it prints, as a JSON object on the last line:

- ``expected_within_10pct``: the largest share of records an efficient unbiased estimate
  can put within 10 % of the remaining time (the mean over records of the chance that a
  normal error with the bound's deviation stays inside 10 %); the target's own measure;
- ``share_within_10pct``: the share whose bound allows it with 90 % confidence.

The bound leaves out the daily cycles, outliers and gaps of the corpus, so real fits do
worse. An estimate biased towards alpha 2, or a Bayesian one averaging over alpha, can beat
it on some records only by losing on others: on the check set neither raised the share
within 10 % at the first red above the fitted rule's.

    .venv/bin/python bench/slope_forecast_bound.py [--records 400] [--window-h 336]
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from hardware_sim.slope_corpus import failure_record

Z_90 = 1.645


def _model(u: np.ndarray, theta: np.ndarray) -> np.ndarray:
    a, c, b, lead, alpha = theta
    p = 1.0 / (alpha - 1.0)
    tau = lead - u
    g = -np.log(tau) if abs(p - 1.0) < 1e-9 else tau ** (1.0 - p) / (p - 1.0)
    return np.asarray(a + c * u + b * g)


def failure_time_sd(
    creep_mm_day: float,
    tertiary_h: float,
    alpha: float,
    noise_mm: float,
    every_s: float,
    lead_h: float,
    window_h: float,
    alpha_known: bool,
) -> float:
    """Cramér-Rao standard deviation (hours) of the failure time ``lead_h`` hours ahead."""
    u = -np.arange(window_h, 0.0, -1.0) + 0.5
    bin_sd = noise_mm / math.sqrt(3600.0 / every_s)
    c = creep_mm_day / 24.0
    theta = np.array([0.0, c, c * tertiary_h ** (1.0 / (alpha - 1.0)), lead_h, alpha])
    n_params = 4 if alpha_known else 5
    jac = np.zeros((u.shape[0], n_params))
    for k in range(n_params):
        h = 1e-6 * max(abs(theta[k]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        jac[:, k] = (_model(u, up) - _model(u, down)) / (2.0 * h)
    covariance = np.linalg.inv(jac.T @ jac / bin_sd**2)
    return float(math.sqrt(covariance[3, 3]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400, help="failure seeds to look at")
    parser.add_argument("--window-h", type=float, default=336.0, help="fit window, hours")
    args = parser.parse_args()
    report: dict[str, object] = {"window_h": args.window_h}
    records = [failure_record(seed) for seed in range(args.records)]
    records = [r for r in records if r.noise_mm <= 0.05]
    report["records"] = len(records)
    for lead in (24.0, 30.0, 48.0):
        for known in (False, True):
            sds = [
                failure_time_sd(
                    r.params["creep_mm_day"],
                    r.params["tertiary_h"],
                    r.params["alpha"],
                    r.noise_mm,
                    r.interval_s,
                    lead,
                    args.window_h,
                    known,
                )
                for r in records
            ]
            share = sum(1 for sd in sds if Z_90 * sd <= 0.1 * lead) / len(sds)
            expected = sum(math.erf(0.1 * lead / (sd * math.sqrt(2.0))) for sd in sds) / len(sds)
            key = f"lead_{lead:g}h_alpha_{'known' if known else 'unknown'}"
            report[key] = {
                "expected_within_10pct": round(expected, 3),
                "share_within_10pct": round(share, 3),
                "median_sd_h": round(float(np.median(sds)), 2),
            }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
