"""Runs one sweep and freezes at a chosen point, so the crash test can SIGKILL a real process.

    python -m tests.retention.crash_driver DB_URL DATA_DIR NOW BATCH HOOK N

HOOK is a `SweepHooks` field; at its N-th call the driver prints READY and sleeps until killed.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from retention.sweep import SweepHooks, sweep
from vms.core.db import make_engine, make_sessionmaker


def main() -> None:
    db_url, data_dir, now, batch, hook, n = sys.argv[1:7]
    calls = 0

    def reached(_arg: object) -> None:
        nonlocal calls
        calls += 1
        if calls == int(n):
            print("READY", flush=True)
            time.sleep(3600)

    engine = make_engine(db_url)
    session = make_sessionmaker(engine)()
    sweep(
        session=session,
        data_dir=Path(data_dir),
        now=dt.datetime.fromisoformat(now),
        batch_size=int(batch),
        hooks=SweepHooks(**{hook: reached}),
    )
    session.commit()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
