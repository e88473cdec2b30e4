"""The README's demo runs and prints one row per estimator."""

import skrobust
from skrobust.demo import main


def test_demo_prints_a_row_per_estimator(capsys):
    main(["--n-samples", "2000"])
    out = capsys.readouterr().out
    for name in ["LinearRegression (sklearn)", *skrobust.__all__]:
        assert f"\n{name} " in out
