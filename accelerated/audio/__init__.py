"""Audio recordings (hearings, depositions, calls) to text.

* :mod:`accelerated.audio.decode`: any container PyAV (FFmpeg) reads, decoded a
  window at a time to 16 kHz mono, so a long recording needs bounded memory;
* :mod:`accelerated.audio.whisper`: faster-whisper (CTranslate2) on a local model,
  int8 on the CPU, float16 on CUDA;
* :mod:`accelerated.audio.openai_api`: OpenAI's audio API (deployment stage 1).

The ``transcribe`` stage (:mod:`accelerated.stages.transcribe`) turns the segments
into the document's text, one page per segment, and caches them by the audio's
sha256.
"""
