"""The real-time layer: the channel-layer messages (``broker``), the per-process hub and
its connections (``hub``), the ordering rule (``sequencer``), every wire encoding
(``frames``) and the one module that knows daphne (``daphne``)."""
