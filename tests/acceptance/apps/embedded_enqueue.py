"""Enqueue ``square(i)`` for i in range(N) and write the job ids to ``ids.json``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from app import queue, square


async def main(n: int) -> None:
    try:
        jobs = await queue.enqueue_many([(square, (i,), {}) for i in range(n)])
    finally:
        await queue.close()
    Path("ids.json").write_text(json.dumps([j.id for j in jobs]))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
