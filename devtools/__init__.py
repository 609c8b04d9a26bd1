"""Developer tooling for bc-connector: BC/Entra emulator, local Functions host, Azurite launcher.

Not part of the deployed package (excluded by `.funcignore`); `connector/` never imports it.
"""
