"""Built-in plugins are imported by kind: a registry read first (as a command's only read) holds
every built-in of its kind, a command imports no other kind's built-in modules, and a plugin
file registering a built-in name meets the built-in as when every module was imported first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from framework.registry import ALL

# For every registry, in a fresh process forked before any registry was read: its names when it
# is the first registry read; then every registry's names once all of them were read.
FIRST_READ = """
import json, os
from framework.registry import ALL

first = {}
for kind, registry in ALL.items():
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.write(wfd, json.dumps(registry.names()).encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 1 << 16):
        data += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    first[kind] = json.loads(data)
print(json.dumps([first, {kind: registry.names() for kind, registry in ALL.items()}]))
"""


def _python(code: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=None if env is None else {**os.environ, **env})


def test_a_registry_read_first_holds_every_plugin_of_its_kind(tmp_path):
    proc = _python(FIRST_READ, tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, everything = json.loads(proc.stdout)
    assert first == everything
    assert all(first[kind] for kind in ALL)  # every kind has built-ins (or plugin files)


def test_every_builtin_plugin_is_defined_in_a_module_its_registry_names():
    """A built-in module registers its own objects into the registries that name it: reading
    one registry then imports every module that registers into it, and a built-in registering
    while another imports it does not start importing the rest of its kind half-way."""
    for kind, registry in ALL.items():
        for name in registry.names():
            entry = registry.entry(name)
            if entry.origin.startswith("framework."):
                assert entry.obj.__module__ in registry.builtins, (kind, name)


def test_reading_the_samplers_imports_no_optimizer_or_feed(tmp_path):
    proc = _python("""
        import json, sys
        from framework.registry import SAMPLERS
        assert "greedy" in SAMPLERS
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("framework."))))
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    assert "framework.nn.samplers" in modules
    assert not modules & {"framework.nn.optimizers", "framework.nn.clip",
                          "framework.nn.schedules", "framework.data.feeds.text"}


def test_a_plugin_file_meets_the_builtin_name_it_registers(tmp_path):
    """Replacing a built-in needs replace=True and taking its name by mistake is refused, also
    when the plugin file is loaded before anything read the registry it registers into."""
    code = """
        from framework.errors import PluginError
        from framework.registry import CELLS, SAMPLERS
        try:
            assert "rnn" in CELLS  # discovery loads the plugin file; SAMPLERS is not read yet
            print(SAMPLERS.get("top_k").__qualname__)
        except PluginError as exc:
            print("refused:", exc)
        """
    for replace, expected in ((True, "Mine"),
                              (False, "refused: sampler 'top_k' is already registered by "
                                      "framework.nn.samplers")):
        folder = tmp_path / f"replace_{replace}"
        folder.mkdir()
        (folder / "mine.py").write_text(textwrap.dedent(f"""
            from framework.nn.samplers import Greedy
            from framework.registry import SAMPLERS

            @SAMPLERS.register("top_k", replace={replace})
            class Mine(Greedy):
                pass
            """))
        proc = _python(code, tmp_path, env={"RNNLAB_PLUGIN_PATH": str(folder)})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(expected), proc.stdout
