"""Reference apps the service is compared with (run under gunicorn by the harness)."""
