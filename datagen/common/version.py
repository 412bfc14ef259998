"""The package version: in one leaf module, so every layer can record it without importing the package root."""

__version__ = "0.1.0"
