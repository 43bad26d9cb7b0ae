"""A session's first call finds loaded what start-up deferred: the modules are loaded in the background
after the handshake, never before the initialize answer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# In a fresh interpreter, as a host's process would be: nothing of the test session is loaded there.
PROBE = textwrap.dedent(
    """
    import json, sys, threading, anyio
    from mcp import Client
    from dicomweb_mcp.config import Config
    from dicomweb_mcp.tools.server import build_server

    async def main():
        config = Config.single(url="http://127.0.0.1:9/dicom-web", download_dir=sys.argv[1], server_kind="generic")
        server = build_server(config)
        seen = {"built": "pydicom" in sys.modules}
        async with Client(server) as client:
            seen["initialized"] = True
            await client.list_tools()
        for thread in threading.enumerate():
            if thread.name == "dicomweb-mcp-warm":
                thread.join(60)
        seen["warm"] = [name for name in ("pydicom.datadict", "numpy", "PIL.Image", "pypdf") if name in sys.modules]
        print(json.dumps(seen))

    anyio.run(main)
    """
)


def test_deferred_modules_load_after_the_handshake(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["built"] is False  # start-up does not pay for them
    assert seen["warm"] == ["pydicom.datadict", "numpy", "PIL.Image", "pypdf"]
