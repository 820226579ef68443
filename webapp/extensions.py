"""Flask extensions, created unbound here and bound in create_app()."""

from __future__ import annotations

from flask_login import LoginManager

from .web.same_origin import SameOriginCSRFProtect

login_manager = LoginManager()
# "basic"/"strong" protection writes to the session on any request, polls included; webapp's
# own rules (rotation at sign-in, server-side expiry and sign-out) protect the session instead.
login_manager.session_protection = None

csrf = SameOriginCSRFProtect()
