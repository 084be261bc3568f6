"""Strategy definitions shipped with qonline (YAML)."""
