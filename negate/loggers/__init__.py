"""Run loggers of the ``logger`` group: each module registers a :class:`negate.loggers.base.RunLogger` subclass under
its ``logger.kind`` in :data:`negate.plugins.LOGGERS`; it is built as ``cls(run_dir, config, **options)``."""
