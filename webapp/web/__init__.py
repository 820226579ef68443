"""HTTP plumbing shared by every route: the hostile-request guard, security headers, static
files at their content hash, htmx helpers, and the one `next` validator."""
