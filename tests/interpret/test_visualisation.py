import numpy as np
import pytest

from debuggable.errors import DebuggableError
from debuggable.interpret import low_frequency_share


def test_low_frequency_share_closed_forms():
    rows = np.arange(16)[:, None] * np.ones((1, 16))
    slow = np.cos(2 * np.pi * rows / 16)  # 1/16 cycles per pixel: below the 0.125 cutoff
    fast = np.cos(np.pi * rows)  # Nyquist stripes
    mixed = slow + fast  # mean squares 1/2 (cosine) and 1 (+-1 stripes): a third is slow
    x = np.stack([slow, fast, mixed, np.full((16, 16), 3.0)])[:, None]
    np.testing.assert_allclose(low_frequency_share(x), [1.0, 0.0, 1 / 3, 0.0], atol=1e-12)
    noise = np.random.default_rng(0).normal(size=(200, 1, 32, 32))
    assert low_frequency_share(noise).mean() == pytest.approx(np.pi * 0.125**2, abs=0.01)
    with pytest.raises(DebuggableError, match=r"expected \(N, C, H, W\)"):
        low_frequency_share(np.zeros((4, 4)))
