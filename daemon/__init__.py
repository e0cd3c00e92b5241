"""blender-scene-sessions daemon: sessions for Blender scenes, driven from outside."""

__version__ = "0.1.0"
