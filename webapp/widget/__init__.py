"""The poll path: what the widget shows (state.py), the Flask views (views.py), and the WSGI
fast path that answers most polls before Flask (fast_path.py)."""
