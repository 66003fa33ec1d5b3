"""Training data: one reader-backed dataset (``sources``), the engine drives and the benchmarks
that feed it (``drives``, ``benchmarks``), every transform (``transforms``), the sampler
(``sampler``) and the configured sets (``splits.build_datasets``)."""
