"""Online serving: the stages after training (DESIGN.md "The daily routine").

- :mod:`~quant_core.online.promotion` — the ``online`` alias and the promotion log (which model
  serves which date);
- :mod:`~quant_core.online.predictions` — incremental predictions per model version (PredUpdater);
- :mod:`~quant_core.online.signals` — the served signal per strategy and the cross-strategy
  AverageEnsemble, in the lake;
- :mod:`~quant_core.online.redis_sink` — signal snapshots in Redis, switched in atomically, and the
  consumer's reader;
- :mod:`~quant_core.online.monitoring` — live IC and rank IC as labels become observable.
"""
