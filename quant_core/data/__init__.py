"""Extract → validate → store: bar schema, sources, the lake (manifests, commits, writer lease), validation, ingest."""
