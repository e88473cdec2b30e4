"""Strides of the subsamples ``X[::step]`` that starts and solver levels use.

Rows are often ordered with a period: time-sorted data with weekday, month,
hour, week-of-year or day-of-year dummies. Every 8th row of monthly rows
holds 3 of the 12 months: the other months' dummies are all zero in such a
subsample, its fit leaves their coefficients at zero, and the full problem
starts far from its optimum (measured: 2-11 times the time of the same rows
shuffled). A stride ``s`` meets every phase of a period ``T`` when
:math:`\\gcd(s, T) = 1`. The strides here have no prime factor below 11,
nor 13 or 73, so they meet every phase of any period made of the primes 2,
3, 5, 7, 13 and 73: the calendar's periods 7 (days of a week), 12 (months),
24 (hours), 52 (weeks of a year), 60 (minutes, seconds), 168 (hours of a
week), 365 (days of a year), 1440 (minutes of a day), 8760 (hours of a
year), and their multiples and divisors (26 fortnights, 13 four-week
periods, 4 quarters). A stride of such strides (a subsample's subsample)
has none of those factors either. Other primes are left to chance: a
period of 11 (or 17, 19, ...) rows meets one phase at a stride of 11.
"""

import math

# 2 * 3 * 5 * 7 * 13 * 73: the primes of the calendar's periods (see the
# module); a stride coprime to it meets every phase of theirs.
_CALENDAR_PRIMES = 2 * 3 * 5 * 7 * 13 * 73

# The smallest stride above 1 coprime to _CALENDAR_PRIMES.
_SMALLEST = 11

# Strides up to this one become 1 (all rows), larger ones below _SMALLEST
# become _SMALLEST: the nearer of the two in ratio (sqrt(11) = 3.3).
_ALL_ROWS_UP_TO = 3


def aperiodic_step(step):
    """A stride near ``step`` with no prime factor below 11, nor 13 or 73.

    The subsample ``X[::s]`` then holds every phase of rows ordered with
    any period whose prime factors are among 2, 3, 5, 7, 13 and 73 (the
    calendar's: 7, 12, 24, 52, 60, 365, 8760, ...;
    :math:`\\gcd(s, T) = 1` for every such period :math:`T`), while keeping
    about the rows that ``step`` asked for: from 11 on, the smallest such
    stride at least ``step`` (11, 17, 19, 23, 29, ...: at most 30% fewer
    rows, 12 -> 17, and at most 18% from 14 on). A stride of 13 held 4 of
    the 52 weeks of weekly rows. Below 11 no stride but 1 qualifies:
    ``step`` of at most 3 becomes 1 (all rows, at most 3 times those asked
    for), 4 to 10 becomes 11 (at most 2.75 times fewer). Rounding 2 up to
    11 once left a start 273 of 3000 rows, and a 20 000 x 2001
    least-squares start 1819 rows, which took its fits from 24 Newton
    iterations to 200 and from convergence to a ``ConvergenceWarning``.
    Below 1 (fewer rows than asked for) is 1.

    Examples
    --------
    >>> [aperiodic_step(s) for s in (0, 1, 2, 3, 4, 8, 11, 12, 20, 24, 72)]
    [1, 1, 1, 1, 11, 11, 11, 17, 23, 29, 79]
    """
    step = int(step)
    if step <= _ALL_ROWS_UP_TO:
        return 1
    step = max(step, _SMALLEST)
    while math.gcd(step, _CALENDAR_PRIMES) != 1:
        step += 1
    return step
