"""The package: `pip wheel .` builds a wheel that, installed in a fresh virtualenv with the
locked versions and nothing else, serves the same pages as a checkout, from a folder outside it;
setup.cfg declares every package the code imports.

Needs the package registry (or pip's and uv's caches): the build fetches setuptools, uv the
locked packages.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: What a build leaves in a checkout; the wheel is built from a copy without them, so that an
#: old build/ cannot put files that no longer exist into it.
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", "instance", ".*_cache")

#: Run by the installed virtualenv's python, from a folder outside the checkout: what
#: create_app() found, and the sign-in page and the static files it links.
SERVE = """
import json, re, sys
import webapp
app = webapp.create_app()
client = app.test_client()
login = client.get("/login")
html = login.get_data(as_text=True)
static = {}
for url in re.findall(r'(?:href|src)="(/static/[^"?]+)', html):
    answer = client.get(url)
    static[url] = [answer.status_code, answer.get_data().hex()]
print(json.dumps({
    "package": webapp.__file__,
    "templates": app.template_folder,
    "static_folder": app.static_folder,
    "instance": app.instance_path,
    "login": [login.status_code, html],
    "static": static,
}))
"""


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def outside_environment(home: Path) -> dict[str, str]:
    """The caller's environment without anything that points at the checkout or sets webapp."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WEBAPP_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["HOME"] = os.environ.get("HOME", str(home))
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "webapp"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ".", cwd=source)
    (built,) = out.glob("webapp-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and requirements.txt's packages, hash-checked:
    a dependency setup.cfg declares but the lock file lacks fails the install."""
    folder = tmp_path_factory.mktemp("venv")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    requirements = folder / "requirements.txt"
    requirements.write_text(
        f"-r {ROOT / 'requirements.txt'}\nwebapp @ {wheel.as_uri()} --hash=sha256:{digest}\n"
    )
    env = outside_environment(folder)
    run(
        BIN / "uv",
        "venv",
        "--quiet",
        "--python",
        sys.executable,
        folder / "venv",
        cwd=folder,
        env=env,
    )
    python = folder / "venv" / "bin" / "python"
    run(
        *(BIN / "uv", "pip", "install", "--quiet", "--python", python),
        *("--require-hashes", "-r", requirements),
        cwd=folder,
        env=env,
    )
    return folder / "venv"


def test_the_wheel_holds_every_module_template_and_static_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"webapp/{path.relative_to(ROOT / 'webapp')}"
        for path in (ROOT / "webapp").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    for folder in ("templates", "static"):
        expected |= {
            f"webapp/{path.relative_to(ROOT)}"
            for path in (ROOT / folder).rglob("*")
            if path.is_file()
        }
    missing = sorted(expected - names)
    assert missing == [], f"not in the wheel (a new package? list it in setup.cfg): {missing}"
    assert not any(name.startswith(("templates/", "static/", "tests/")) for name in names)


def test_the_installed_wheel_serves_the_sign_in_page_and_static_files(venv: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = outside_environment(tmp_path)
    env["WEBAPP_INSTANCE_PATH"] = str(tmp_path / "instance")
    served = json.loads(run(venv / "bin" / "python", "-c", SERVE, cwd=elsewhere, env=env))
    site = Path(served["package"]).parent
    assert venv in site.parents, served["package"]  # the installed copy, not the checkout
    assert served["templates"] == str(site / "templates")
    assert served["static_folder"] == str(site / "static")
    assert served["instance"] == str(tmp_path / "instance")
    status, html = served["login"]
    assert status == 200
    for field in ('name="username"', 'name="password"', 'name="csrf_token"'):
        assert field in html
    assert "/static/vendor/htmx/htmx.min.js" in served["static"]
    for url, (status, body) in served["static"].items():
        assert status == 200, url
        assert bytes.fromhex(body) == (ROOT / url.removeprefix("/")).read_bytes(), url


def test_the_installed_wheel_migrates_into_flasks_instance_folder(venv: Path, tmp_path: Path):
    """Without WEBAPP_INSTANCE_PATH an installed webapp keeps its instance folder where Flask
    puts an installed package's, <prefix>/var/webapp-instance; its migrations are packaged."""
    run(
        venv / "bin" / "flask",
        "--app",
        "webapp",
        "db",
        "upgrade",
        cwd=tmp_path,
        env=outside_environment(tmp_path),
    )
    instance = venv / "var" / "webapp-instance"
    assert (instance / "webapp.db").is_file()
    assert (instance / "secret_key").is_file()


def imported_packages(*paths: Path) -> set[str]:
    """The top-level names of what `paths` import, less the standard library and webapp."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"webapp"}


def test_every_package_the_code_imports_is_declared():
    """A package that comes only as another's dependency may leave with it, or move on."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines()
    declared = {canonicalize_name(Requirement(line).name) for line in lines if line.strip()}
    sources = [*(ROOT / "webapp").rglob("*.py"), ROOT / "wsgi.py", ROOT / "gunicorn.conf.py"]
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        name: distributions.get(name, [name])
        for name in imported_packages(*sources)
        if not {canonicalize_name(d) for d in distributions.get(name, [name])} & declared
    }
    assert undeclared == {}, "add to install_requires in setup.cfg, then run make lock"
