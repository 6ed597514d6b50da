"""Print ``{"results": [...], "counts": {...}}`` for the jobs listed in ``ids.json``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from app import queue


async def main() -> None:
    ids = json.loads(Path("ids.json").read_text())
    try:
        results = [await queue.job(i).result(timeout=10) for i in ids]
        counts = {str(k): v for k, v in (await queue.counts()).items()}
    finally:
        await queue.close()
    print(json.dumps({"results": results, "counts": counts}))


if __name__ == "__main__":
    asyncio.run(main())
