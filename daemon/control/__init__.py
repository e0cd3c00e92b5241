"""The control port: clients talk to the daemon here."""

from .server import ControlServer

__all__ = ["ControlServer"]
