"""tqdm bars behind the ``progress(done, total, stage)`` callback used by every stage."""

from __future__ import annotations

import contextlib

from tqdm import tqdm


@contextlib.contextmanager
def tqdm_progress(disable: bool = False):
    """Yield a progress callback that shows one tqdm bar per stage name."""
    bars: dict[str, tqdm] = {}

    def progress(done: int, total: int, stage: str) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="it", disable=disable, dynamic_ncols=True)
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()
