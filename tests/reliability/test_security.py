"""Security rules: nothing is unpickled or executed from data, downloads are verified, the
tracking server stays local by default, and the dependency pins are audited (slow)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framework.errors import CheckpointError
from framework.training.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("framework", "cells", "datasets") for p in (ROOT / d).rglob("*.py"))
BANNED_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}
BANNED_CALLS = {"eval", "exec", "instantiate", "call", "get_method", "get_class", "get_object"}
# Functions that read or write .npy/.npz data: each call must say allow_pickle=False.
NUMPY_IO = {"load", "save", "savez", "savez_compressed", "read_array", "write_array"}


def _name(node: ast.AST) -> str:
    """Dotted name of a call target: np.load -> "np.load", eval -> "eval"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def violations(source: str, filename: str) -> list[str]:
    """Every use of pickle-like loaders, eval/exec, Hydra instantiate, unsafe yaml/np.load."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED_MODULES:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in BANNED_MODULES:
                found.append(f"{where}: from {node.module} import ...")
            if node.module and node.module.startswith("hydra.utils"):
                for alias in node.names:
                    if alias.name in BANNED_CALLS:
                        found.append(f"{where}: from hydra.utils import {alias.name}")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec", "compile") or name.endswith("hydra.utils.instantiate") \
                    or (last == "instantiate" and "hydra" in name):
                found.append(f"{where}: {name}(...)")
            if last == "__import__" and not (node.args and isinstance(node.args[0],
                                                                      ast.Constant)):
                found.append(f"{where}: __import__ of a computed name")
            if last in NUMPY_IO and name.split(".")[0] in ("np", "numpy", "format") or \
                    name.startswith(("np.lib.format.", "numpy.lib.format.")) and last in NUMPY_IO:
                flag = _keyword(node, "allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(f"{where}: {name}(...) without allow_pickle=False")
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
                loader = _keyword(node, "Loader")
                if name != "yaml.load" or not (loader is not None
                                               and "Safe" in _name(loader)):
                    found.append(f"{where}: {name} without SafeLoader")
            if name in ("os.system", "os.popen"):
                found.append(f"{where}: {name}(...)")
            shell = _keyword(node, "shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                found.append(f"{where}: shell=True")
    return found


def test_scanner_catches_every_banned_pattern():
    """The scan below is only worth something if it can fail: feed it each bad pattern."""
    bad = {
        "import pickle": "import pickle",
        "import cloudpickle.cloudpickle": "import cloudpickle",
        "from pickle import loads": "from pickle",
        "eval('1+1')": "eval(",
        "exec('x=1')": "exec(",
        "hydra.utils.instantiate(cfg)": "instantiate",
        "from hydra.utils import instantiate": "from hydra.utils import instantiate",
        "np.load(path)": "without allow_pickle=False",
        "np.load(path, allow_pickle=True)": "without allow_pickle=False",
        "numpy.save(f, a)": "without allow_pickle=False",
        "np.lib.format.read_array(fh)": "without allow_pickle=False",
        "yaml.load(text)": "without SafeLoader",
        "yaml.load(text, Loader=yaml.FullLoader)": "without SafeLoader",
        "yaml.unsafe_load(text)": "without SafeLoader",
        "subprocess.run(cmd, shell=True)": "shell=True",
        "os.system('ls')": "os.system",
        "__import__(name)": "computed name",
    }
    for code, needle in bad.items():
        found = violations(code, "<test>")
        assert found and needle in found[0], (code, found)
    ok = ["np.load(p, allow_pickle=False)", "yaml.load(t, Loader=yaml.SafeLoader)",
          "yaml.safe_load(t)", "__import__('torch')", "subprocess.run(['git', 'x'])",
          "np.savez(fh, allow_pickle=False, **arrays)"]
    for code in ok:
        assert violations(code, "<test>") == [], code


def test_no_pickle_eval_exec_or_unsafe_loading_in_the_sources():
    assert len(SOURCES) > 20
    found = []
    for path in SOURCES:
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == [], "\n".join(found)


def test_checkpoints_are_written_and_read_without_pickle(tmp_path, monkeypatch):
    import pickle

    from tests.helpers import model_checkpoint

    arrays, meta = model_checkpoint()
    # A file whose object array would run code when unpickled (made while pickle still works).
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "evil.npz", allow_pickle=True, __meta__=blob,
             **{**arrays, "param/out.b": np.array([print], dtype=object)})

    def boom(*a, **k):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, boom)
    path = save_checkpoint(tmp_path / "c.npz", arrays, meta)
    loaded, _ = load_checkpoint(path)
    assert loaded["param/out.W"].tolist() == arrays["param/out.W"].tolist()
    with pytest.raises(CheckpointError, match="dtype object"):
        save_checkpoint(tmp_path / "o.npz", {"x": np.array([None], dtype=object)}, {})
    with pytest.raises(CheckpointError, match="object array"):
        load_checkpoint(tmp_path / "evil.npz")


def test_downloads_and_data_dir_copies_are_sha256_verified():
    """framework/data/files/fetch.py pins a sha256 per downloadable dataset; the tests check it."""
    from framework.data.files.fetch import Source
    from framework.plugins import load_plugins
    from framework.registry import DATASETS

    load_plugins()
    # A dataset has one file (``source``) or several (``sources``, e.g. one per class).
    sources = [s for n in DATASETS.names() for s in (getattr(DATASETS.get(n), "source", None),
                                                     *getattr(DATASETS.get(n), "sources", ()))]
    sources = [s for s in sources if s is not None]
    assert sources, "no downloadable dataset"
    for source in sources:
        assert isinstance(source, Source)
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256), source
        assert source.url.startswith("https://"), source.url
    tests = (ROOT / "tests" / "data" / "test_download.py").read_text()
    assert "def test_checksum_mismatch_leaves_nothing" in tests
    assert "def test_data_dir_copies_are_checksummed" in (ROOT / "tests" / "data" /
                                                          "test_datasets.py").read_text()


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SERVER_CMD = re.compile(r"\bmlflow (server|ui)\b[^`\n]*")


def test_docs_bind_the_tracking_server_to_localhost_and_explain_exposure():
    commands, texts = [], {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        texts[doc.name] = text
        for line in text.splitlines():
            match = SERVER_CMD.search(line)
            if match and "--" in match.group(0):  # a command with options, not prose
                commands.append((doc.name, match.group(0)))
    assert commands, "the docs show how to start the tracking server"
    for name, command in commands:
        host = re.search(r"(?:--host|-h)[ =](\S+)", command)
        # No --host: MLflow's own default, checked below, is loopback-only.
        assert host is None or host.group(1) in ("127.0.0.1", "localhost"), f"{name}: {command}"
    from mlflow.utils.cli_args import HOST

    (option,) = HOST(lambda: None).__click_params__
    assert option.default == "127.0.0.1"
    everything = "\n".join(texts.values())
    assert "0.0.0.0" in everything and "authentication" in everything, \
        "the docs must say what --host 0.0.0.0 exposes"
    for name, text in texts.items():
        if "--host 0.0.0.0" in text:
            assert re.search(r"anyone who can reach|no authentication", text), name


# --------------------------------------------------------------------------- dependencies
def _pins() -> dict[str, str]:
    """name -> version of the project's runtime dependencies, as installed."""
    from importlib.metadata import PackageNotFoundError, requires, version

    try:
        reqs = requires("rnnlab") or []
    except PackageNotFoundError:
        pytest.skip("rnnlab is not installed (pip install -e .)")
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r}
    out = {}
    for name in sorted(names):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


@pytest.mark.slow
def test_pip_audit_of_the_runtime_dependencies(tmp_path):
    """pip-audit the installed versions of rnnlab's dependencies against PyPI's advisories.

    Fails on any known vulnerability.  Skips (saying why) when the advisory service cannot
    answer for these versions - e.g. a PyPI mirror without the per-version JSON API - because a
    run that audited nothing is not a pass.
    """
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or shutil.which(
        "pip-audit")
    if exe is None:
        pytest.skip("pip-audit is not installed (pip install -e '.[audit]')")
    pins = _pins()
    assert {"numpy", "mlflow", "hydra-core"} <= set(pins), pins
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    proc = subprocess.run([exe, "-s", "pypi", "--no-deps", "--disable-pip", "-r",
                           str(requirements), "-f", "json", "--progress-spinner", "off"],
                          capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pip-audit gave no report (exit {proc.returncode}): {proc.stderr[-2000:]}")
    deps = report.get("dependencies", [])
    vulnerable = [f"{d['name']} {d['version']}: {[v['id'] for v in d['vulns']]}"
                  for d in deps if d.get("vulns")]
    assert vulnerable == [], vulnerable
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reasons = {d.get("skip_reason", "") for d in deps}
        pytest.skip(f"pip-audit could not audit any pinned dependency here: {sorted(reasons)[:2]}")
    assert len(audited) == len(deps), [d for d in deps if "skip_reason" in d]
