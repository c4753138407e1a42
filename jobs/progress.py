"""Progress bars for long jobs, on stderr so stdout stays scriptable."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int, desc: str, unit: str = "rows") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                dynamic_ncols=True, disable=None, mininterval=0.5)
