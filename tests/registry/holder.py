"""Another host holding the registry: `python -m tests.registry.holder SECONDS|- STORE` takes the promotion
lock as `unetpp` does (its Prefect server from PREFECT_API_URL), prints `held <time>`, holds it SECONDS
(or, with `-`, until a line arrives on stdin), then prints `released <time>`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from unetpp.registry.lock import promotion_lock

if __name__ == "__main__":
    hold, store = sys.argv[1], Path(sys.argv[2])
    with promotion_lock(store):
        print(f"held {time.time()}", flush=True)
        if hold == "-":
            sys.stdin.readline()
        else:
            time.sleep(float(hold))
        print(f"released {time.time()}", flush=True)
