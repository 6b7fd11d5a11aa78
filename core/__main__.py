"""`python -m core ...`: see core/cli.py."""

import os
import sys

from . import distributed
from .cli import main

code = main()
if distributed.launched():
    # A torchrun rank leaves without finalizing the interpreter. After the last collective, a gloo
    # worker thread still has to drop that collective's tensors, which takes the GIL; if Python has
    # begun to finalize by then, that thread aborts the whole process ("terminate called without an
    # active exception", SIGABRT: 7 in 180 runs of a 2-process job here, all after their files were
    # written). Every file is closed by now, so only the standard streams need flushing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
