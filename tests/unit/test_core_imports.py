"""The core package never pulls in Ray, web frameworks or network clients."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("ray", "fastapi", "starlette", "aiomqtt", "aiohttp", "uvicorn")


def test_core_does_not_import_ray_or_network_clients() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import invispose\n"
        "for m in pkgutil.walk_packages(invispose.__path__, 'invispose.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == ""
