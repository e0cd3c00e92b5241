"""Fixtures shared across test modules."""

from .programs import programs

__all__ = ["programs"]
