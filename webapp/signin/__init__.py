"""Ways in beyond the password: an authenticator app (TOTP) with recovery codes, and passkeys.
Each ends in sessions.policy.start(user, method=...)."""
