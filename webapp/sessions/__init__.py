"""The session rules: policy (start, rotate, enforce, expire, end, freshness), the store and
its backends, the anonymous CSRF cookie, the index of live sessions, remember-me, pruning.

Every way of signing in calls policy.start(user, method=...) and nothing lower.
"""
