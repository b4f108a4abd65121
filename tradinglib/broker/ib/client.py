"""The IB client library: ib_async, or ib_insync where only that is installed.

ib_async is the maintained continuation of ib_insync with the same API; users who pin
ib_insync keep it. Never install both in one environment: they overwrite each other's
``eventkit`` module. Everything IB-specific is imported from here, so the rest of the
adapter does not care which library it runs on.
"""

from __future__ import annotations

import importlib
from typing import Any


def _import() -> Any:
    for name in ("ib_async", "ib_insync"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


ib_module: Any = _import()

LIBRARY: str = getattr(ib_module, "__name__", "") if ib_module is not None else ""
"""``"ib_async"``, ``"ib_insync"``, or ``""`` when neither is installed."""


def require() -> Any:
    """The IB client module.

    Raises:
        ConfigError: neither ib_async nor ib_insync is installed.
    """
    if ib_module is None:
        from tradinglib.exceptions import ConfigError

        raise ConfigError("the IB broker needs ib_async (pip install ib_async) or "
                          "ib_insync; neither is installed")
    return ib_module
