"""Local Business Central API v2.0 + Microsoft Entra ID emulator over https (dev tooling).

Never deployed (excluded by `.funcignore`); `connector/` never imports it.
"""
from .clock import Clock
from .config import ClientApp, EmulatorConfig
from .server import Emulator

__all__ = ["ClientApp", "Clock", "Emulator", "EmulatorConfig"]
