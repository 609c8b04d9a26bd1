"""Local Functions host for machines without Core Tools (dev tooling, not deployed; see `host.LocalHost`)."""

from .config import ConfigError
from .functions import Invocation
from .host import LocalHost

__all__ = ["ConfigError", "Invocation", "LocalHost"]
