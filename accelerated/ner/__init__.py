"""Named-entity recognition with a transformers token-classification model.

* :mod:`accelerated.ner.labels`: a model's ``id2label`` onto the one vocabulary;
* :mod:`accelerated.ner.model`: the model and tokenizer (one per process, on CUDA
  when present), windows with a stride, the ``first`` aggregation;
* :mod:`accelerated.ner.batcher`: feeds the model from every document in flight;
* :mod:`accelerated.ner.backend`: the ``transformers`` and ``rules+transformers``
  entity backends.

torch and transformers are imported only by ``model``, and only when a backend is
built, so nothing else pays for them.
"""
