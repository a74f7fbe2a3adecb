"""Embedded default models and adapters (the repository's weights/ folder), see manifest.json."""
