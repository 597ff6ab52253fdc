"""What went wrong, as the exit code says it: the one place the pipeline's error kinds are defined.

`unetpp` exits 0 when done, 2 on a `UserError` (the data, the params or a request is wrong:
running it again cannot help, so the flow never retries it), 3 on `DidNotLearn` (training ran but
the model is no better than a trivial one: a bad result, not bad input; not retried either, as the
same data and recipe give the same result) and 1 on anything else (a killed worker, CUDA out of
memory, a busy store: the flow retries it).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_DID_NOT_LEARN = 3
# where `unetpp` writes {"command", "code", "error"} on failure when set: the flow reads the code
# of the command that DVC ran (dvc itself exits 255 whatever its command returned)
EXIT_FILE_ENV = "UNETPP_EXIT_FILE"


class UserError(ValueError):
    """Bad input, bad params or bad data; the message names what was wrong and what was expected."""


class DidNotLearn(RuntimeError):
    """Training finished, but a class is no better than a trivial predictor (`unetpp.training.learning_guard`)."""
