from __future__ import annotations

import numpy as np
import pytest

from sonoshift.growth import hadlock_ga_from_hc


def test_hadlock_hand_computed_values() -> None:
    # HC = 20 cm: 8.96 + 10.8 + 0.0003 * 8000 = 22.16 weeks
    assert hadlock_ga_from_hc(200.0) == pytest.approx(22.16)
    # HC = 10 cm: 8.96 + 5.4 + 0.3 = 14.66 weeks
    assert hadlock_ga_from_hc(100.0) == pytest.approx(14.66)
    # HC = 33.1 cm: 8.96 + 17.874 + 0.0003 * 36264.691 = 37.7134...
    assert hadlock_ga_from_hc(331.0) == pytest.approx(8.96 + 17.874 + 0.0003 * 33.1**3)


def test_hadlock_vectorized_and_increasing() -> None:
    hc = np.array([50.0, 150.0, 300.0])
    ga = hadlock_ga_from_hc(hc)
    assert ga.shape == (3,)
    assert np.all(np.diff(ga) > 0)
    np.testing.assert_allclose(ga[1], 8.96 + 0.54 * 15 + 0.0003 * 15**3)
