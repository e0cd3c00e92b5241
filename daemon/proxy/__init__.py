"""The recording proxy: clients written for an addon point here instead."""

from .server import ProxyServer

__all__ = ["ProxyServer"]
