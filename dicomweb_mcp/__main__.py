"""``python -m dicomweb_mcp`` and the ``dicomweb-mcp`` command."""

import gc
import sys


def main() -> int:
    # Start-up creates hundreds of thousands of long-lived objects (above all the MCP SDK's protocol
    # models): the cyclic collector would scan them again and again for nothing, while a host waits for
    # the first answer. It is switched back on once the server is built.
    gc.disable()
    from .cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
