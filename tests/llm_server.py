"""The test server moved to :mod:`benchmarks.llm_server` (the benchmark harness uses it
and may not import ``tests``); this name stays for imports elsewhere."""

from benchmarks.llm_server import ChatServer, Received, Reply, chunk_of, default_responder

__all__ = ["ChatServer", "Received", "Reply", "chunk_of", "default_responder"]
