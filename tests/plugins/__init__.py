"""Backends that tests register through ``PLUGINS`` (as a user's own package would)."""
