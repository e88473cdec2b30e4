"""Strides of the subsamples ``X[::step]`` that starts and solver levels use.

Rows are often ordered with a period: time-sorted data with weekday, month
or hour dummies. Every 8th row of monthly rows holds 3 of the 12 months:
the other months' dummies are all zero in such a subsample, its fit leaves
their coefficients at zero, and the full problem starts far from its
optimum (measured: 2-11 times the time of the same rows shuffled). A stride
with no prime factor below 11 meets every phase of any period made of the
primes 2, 3, 5 and 7 (2, 4, 6, 7, 12, 24, 60, 168, ...), and a stride of
such strides (a subsample's subsample) has none either.
"""

import math

# 2 * 3 * 5 * 7: a stride coprime to it has no prime factor below 11.
_SMALL_PRIMES = 210

# The smallest stride above 1 with no prime factor below 11.
_SMALLEST = 11

# Strides up to this one become 1 (all rows), larger ones below _SMALLEST
# become _SMALLEST: the nearer of the two in ratio (sqrt(11) = 3.3).
_ALL_ROWS_UP_TO = 3


def aperiodic_step(step):
    """A stride near ``step`` with no prime factor below 11.

    The subsample ``X[::s]`` then holds every phase of rows ordered with
    any period whose prime factors are below 11 (:math:`\\gcd(s, T) = 1`
    for every such period :math:`T`), while keeping about the rows that
    ``step`` asked for: from 11 on, the smallest such stride at least
    ``step`` (at most 18% fewer rows: 11, 13, 17, 19, 23, 29, ...). Below
    11 no stride but 1 qualifies: ``step`` of at most 3 becomes 1 (all
    rows, at most 3 times those asked for), 4 to 10 becomes 11 (at most
    2.75 times fewer). Rounding 2 up to 11 once left a start 273 of
    3000 rows, and a 20 000 x 2001 least-squares start 1819 rows, which
    took its fits from 24 Newton iterations to 200 and from convergence
    to a ``ConvergenceWarning``. Below 1 (fewer rows than asked for) is 1.

    Examples
    --------
    >>> [aperiodic_step(s) for s in (0, 1, 2, 3, 4, 8, 11, 12, 20, 24)]
    [1, 1, 1, 1, 11, 11, 11, 13, 23, 29]
    """
    step = int(step)
    if step <= _ALL_ROWS_UP_TO:
        return 1
    step = max(step, _SMALLEST)
    while math.gcd(step, _SMALL_PRIMES) != 1:
        step += 1
    return step
