"""Data sources of the ``data`` group: each module registers a loader ``data_cfg -> (records, skipped)`` under its
``data.kind`` in :data:`negate.plugins.DATA_SOURCES`."""
