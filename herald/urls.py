"""The address at which a command reaches the API that the settings configure."""

from __future__ import annotations

from herald.config import ApiSettings

__all__ = ["default_host"]

# An API bound to every address is reached on loopback.
_BIND_ALL_HOSTS = frozenset({"", "0.0.0.0", "::"})


def default_host(api: ApiSettings) -> str:
    """Return the base URL at which the API configured by `api` is reached from this machine."""
    host = "127.0.0.1" if api.host in _BIND_ALL_HOSTS else api.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{api.port}"
