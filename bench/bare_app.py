"""The baseline of `make bench`: a bare Flask app, one JSON route and nothing else (no
extension, no hook, no session, no middleware), served by the same gunicorn settings as the
app. A request here costs what Flask and gunicorn cost for any JSON answer; a /session poll
at 0.9x of it or better spends next to nothing of its own.
gunicorn: `--pythonpath bench bare_app:app`."""

from flask import Flask

app = Flask(__name__, static_folder=None)  # no /static route either


@app.get("/")
def hello() -> dict[str, str]:
    return {"message": "hello"}
