"""Redis-accelerated pipeline for legal documents.

Stages are pure transforms (``accelerated.stages``); only the handoff between them
and the persistence of their outputs differ between the accelerated and the
traditional path (see ``DESIGN.md``).
"""

__version__ = "0.1.0"
