"""LLM backends on OpenAI-compatible APIs (OpenAI, vLLM, Ollama, llama.cpp's server).

``limiter``: one global request-and-token limit in a Lua script, and the run's token
budget; ``cache``: the exact response cache in Redis; ``client``: a chat call through
both, its errors translated at the boundary; ``usage``: per-project counters in Redis
for the summary; ``service``: one backend's endpoint, checked at start-up and bound to
the runtime's Redis; ``ask``: a validated JSON question with one repair; the backends:
``entities`` (``ENTITY_BACKEND=llm`` / ``rules+llm``), ``structured``
(``STRUCTURED_EXTRACTION=llm``), ``resolution`` (``RESOLUTION=llm``).
"""
