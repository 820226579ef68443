"""Alembic revisions, one file each: r<revision>_<slug>.py (`flask --app webapp db revision`)."""
