"""Numbers shared by the failure-forecast kernel and its plain-Python reference.

The grids the fit searches, its statistical limits and the layout of a forecast. Pure
data: importing it never imports numba.
"""

from __future__ import annotations

#: Failure times tried on the coarse grid (hours ahead, geometric), then REFINE times
#: FINE more between the best one's neighbours, each pass on a finer grid.
COARSE = 48
FINE = 12
REFINE = 2
TRIED = COARSE + REFINE * FINE
MIN_LEAD_H = 0.25
#: A parabola must beat a line by this F statistic before the Voight fit is tried.
GATE_EVIDENCE = 10.0
#: The failure time's stated 95 % interval is the profile-likelihood region within this
#: chi-square point (one degree of freedom). The textbook 95 % point, 3.841, held the true
#: failure at only 88-91 % of first reds on the corpus's 10-minute records (the law fits a
#: slope closely, not exactly); the 99 % point holds it at 95 % or more on the tuning set,
#: with either polling interval, at first red and at every accepted forecast alike
#: (``bench/slope_forecast.py``'s ``red_interval_covers``).
INTERVAL_CHI2 = 6.635
#: The daily cycle is fitted only over a window spanning at least this many hours (two
#: turns): over less, a cosine and a sine pass for a curve and a slope.
CYCLE_MIN_SPAN_H = 48.0
#: The shares of the rule's window fitted, longest first: the whole window, then, when its
#: forecast is set aside, its latest quarter and eighth (3.5 and 1.75 days of 14). A slope
#: whose tertiary creep began abruptly inside the window (steady creep, then Voight's law
#: alone) is no fit for steady creep plus Voight's law over the whole of it; over the part
#: after the onset it is. Measured with ``bench/slope_forecast.py``'s ``abrupt_onset``; a
#: half-window share was left out: it took a seasonal acceleration for an onset. The last
#: share is also fitted with Voight's law alone (no steady creep beside it). A later
#: share (the last, else, when the last one's forecast fails the evidence test, the
#: quarter) overrules a longer share's accepted forecast whose interval lies wholly after
#: its own.
WINDOW_SHARES = (1.0, 0.25, 0.125)
#: A later share overrules a longer share's accepted forecast only when the longer fit
#: leaves this many times the residuals over the later share that the later share's own
#: curve does (``forecast_kernels.overruled``). Measured on the tuning set's records a
#: day to 6 h before failure: a gradual failure's longer fit reached 1.2 over the last
#: share where the two intervals did not meet; across an abrupt onset, 2.3-43 where the
#: later share was right. Over the quarter the whole window's gradual fits reached 1.18
#: (tuning seeds 0-39, every third, a day and 9 h before failure).
LAG_MISFIT = 2.0
#: Where the yellow horizon sits in a rule's horizons (blue, yellow, orange, red): the one
#: level an unconfirmed forecast can raise (``forecast_kernels.watched``).
YELLOW = 1
#: Layout of a forecast (what the fit makes, and what a gateway reports of it).
LEAD_H, FAILURE_T, FAILURE_LO, FAILURE_HI, ALPHA, VELOCITY, EVIDENCE = range(7)
OUT_SIZE = 7
#: The rule's value snapshot is the newest forecast, then the lead its horizons judged:
#: hours to the latest of the confirming forecasts' failure times, shortened for caution;
#: inf while they do not confirm, NaN with too little data. An event's words state it, so
#: they never show one time and judge by another (``details``).
CONFIRMED_H = OUT_SIZE
#: Then the newest forecast's own lead, shortened for caution on its own interval (not
#: the stated one): what an unconfirmed forecast's yellow is judged by (``unconfirmed_h``);
#: inf when it failed the evidence test, NaN with too little data.
NEWEST_H = OUT_SIZE + 1
SNAP_SIZE = OUT_SIZE + 2
#: Exponents tried: N_ALPHA_STEPS evenly spaced, the rule's alpha_range ends on the grid
#: and ALPHA_MARGIN steps beyond each end (never below 1.05). A best fit outside the
#: range says the record does not accelerate the Voight way.
N_ALPHA_STEPS = 13
ALPHA_MARGIN = 2
#: Parabolic steps that refine alpha between grid points, and the lowest alpha tried.
ALPHA_REFINE = 3
ALPHA_FLOOR = 1.05
#: An increment this many robust scales off the median rate is an outlier, if the next
#: one comes back; a step (a re-installed sensor) must be STEP_SCALES off, since taking
#: real motion out of the record would be far worse than leaving a small step in.
OUTLIER_SCALES = 6.0
STEP_SCALES = 20.0
#: An increment longer than GAP_INTERVALS median increments spans a telemetry gap: the
#: motion expected over it is the local rate, fitted over GAP_SPAN_S (or the gap, if
#: longer) on each side, not the window's median rate.
GAP_INTERVALS = 2.5
GAP_SPAN_S = 6 * 3600.0
#: Failure further ahead than this many hours is "no failure in sight".
MAX_LEAD_HOURS = 1000.0
#: A forecast is refuted when the upper end of its 95 % interval passes and the slope has
#: not failed; for REFUTED_HOLD_S after that, no forecast passes the evidence test. Only
#: forecasts that accelerate faster than the rule accepts (alpha above ``alpha_range``,
#: with an F of ``min_evidence`` and a bounded interval) are held to their word: they put
#: the failure close ahead. A seasonal rise that passes for a failure shows itself this
#: way: its fits had alpha 3-4.9 and failure 8-20 h ahead, the hours passed, and the next
#: fits, alpha back in range, would have confirmed a red (quiet year 3044 of
#: ``bench/slope_forecast.py --sets fresh``). Holding every strong forecast to its word
#: warned abrupt onsets later (their early fits over the whole window put the failure too
#: soon); held to alpha above the range, no level on the corpus's failures moved, gradual
#: or abrupt. 24 h cleared 3044; 48 h keeps a margin.
REFUTED_HOLD_S = 48 * 3600.0
