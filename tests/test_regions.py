import numpy as np
import pytest

from phasediff.errors import PhasediffError
from phasediff.regions import chebyshev_distance, default_site, tripartition


def test_centre_site_ring_sizes_on_the_paper_grid():
    assert default_site((27, 27)) == (13, 13) and default_site((28, 28)) == (14, 14)
    for r in range(1, 13):
        part = tripartition((27, 27), r)
        assert part.sizes() == {"A": 1, "B": (2 * r + 1) ** 2 - 1, "C": 729 - (2 * r + 1) ** 2}


def test_masks_partition_the_grid_and_follow_chebyshev_distance():
    part = tripartition((10, 12), 2, site=(3, 4), patch=2)
    total = part.A.astype(int) + part.B.astype(int) + part.C.astype(int)
    assert np.all(total == 1)
    assert part.A.sum() == 4 and part.A[3:5, 4:6].all()
    dist = chebyshev_distance((10, 12), (3, 4), 2)
    assert np.array_equal(part.B, (dist >= 1) & (dist <= 2))


def test_ring_is_clipped_at_the_border():
    part = tripartition((9, 9), 3, site=(0, 0))
    assert part.sizes() == {"A": 1, "B": 15, "C": 65}


@pytest.mark.parametrize("kwargs, message", [
    ({"radius": 0}, "radius"),
    ({"radius": 1, "site": (9, 0)}, "outside"),
    ({"radius": 1, "site": (-1, 2)}, "outside"),
    ({"radius": 1, "site": (0, 0), "patch": 3}, "does not fit"),
    ({"radius": 1, "patch": 0}, "patch"),
    ({"radius": 4}, "C is empty"),
])
def test_bad_regions_are_refused(kwargs, message):
    with pytest.raises(PhasediffError, match=message):
        tripartition((9, 9), **kwargs)
