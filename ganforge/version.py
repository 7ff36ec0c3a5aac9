"""The package version, importable from every layer (the package root imports the CLI-facing API)."""

__version__ = "0.1.0"
