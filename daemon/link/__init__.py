"""The daemon's trio client for the Blender addon."""

from .addon import AddonLink, LinkConfig, LinkObserver, LinkSnapshot, LinkStatus

__all__ = ["AddonLink", "LinkConfig", "LinkObserver", "LinkSnapshot", "LinkStatus"]
