"""How many threads BLAS may use while training.

An RNN step multiplies small matrices (batch x hidden), where OpenBLAS's threads cost more in
hand-offs than they gain, and on a busy machine spinning threads slow training by an order of
magnitude. rnnlab therefore trains with one BLAS thread unless told otherwise (``threads=2``, or
``threads=null`` for the library's default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS to ``limit`` threads inside the block (None: leave the library's default)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield
