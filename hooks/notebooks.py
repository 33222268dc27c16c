"""MkDocs hook (placeholder, filled in by issue #19's work)."""
