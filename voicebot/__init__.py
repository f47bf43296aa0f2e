"""voicebot: a SIP bot for post-call categorization and missed-call callback."""

import os

# In-band DTMF runs one small numpy product per media tick on the event loop.
# A threaded BLAS only adds threads that contend for the same cores (and
# measured 3x slower per tick here), so it is pinned to one thread before
# anything imports numpy. setdefault: an operator's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
