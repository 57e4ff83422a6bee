"""LLM backends on OpenAI-compatible APIs (OpenAI, vLLM, Ollama, llama.cpp's server).

``limiter``: one global request-and-token limit in a Lua script; ``cache``: the
exact response cache in Redis; ``client``: a chat call through both, its errors
translated at the boundary; ``entities``: the ``llm`` entity backend.
"""
