"""Discord features, one extension per file; modules starting with `_` are shared helpers, not extensions."""
