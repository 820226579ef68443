"""Ways in besides the password form: an authenticator app (TOTP) with recovery codes,
passkeys, OpenID Connect providers, and password reset by mail. Each ends in
sessions.policy.start(user, method=...)."""
