"""Run in a fresh process by the memory test: retrieve a whole study to disk, report peak RSS growth.

ru_maxrss is the process's peak, so the baseline is taken after imports and a first request, and the
growth is what the retrieve alone added.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import anyio

from dicomweb_mcp import Config, DicomWebClient
from dicomweb_mcp._store import FileStore


async def main(url: str, study_uid: str, directory: Path) -> None:
    async with DicomWebClient(Config(url=url, timeout=120)) as client:
        await client.search_studies({"StudyInstanceUID": study_uid})
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with client.stream_instances(study_uid) as reader:
            saved = await FileStore(directory).save_instances(reader, directory)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "baseline_kib": baseline,
                "peak_kib": peak,
                "files": len(saved),
                "bytes": sum(f.size_bytes for f in saved),
            }
        )
    )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], Path(sys.argv[3]))
