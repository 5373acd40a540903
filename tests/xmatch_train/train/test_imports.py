"""The trainer imports nothing of drrgen but its light shared modules (no Numba at run time):
the store contract, the one CLI error path and the one typed-config coercion."""

import ast
import subprocess
import sys
from pathlib import Path

import xmatch_train

TEST_HELPERS = {"testing.py"}  # renders toy stores with drrgen's projector, tests only
SHARED = {"drrgen.store_contract", "drrgen.clikit", "drrgen.typed_config", "drrgen.errors"}


def _drrgen_imports(path: Path) -> set[str]:
    """Modules of drrgen that `path` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "drrgen"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "drrgen":
            found.add(node.module)
    return found


def test_the_trainer_imports_only_the_shared_modules_of_drrgen():
    root = Path(xmatch_train.__file__).parent
    found = {
        str(p.relative_to(root)): _drrgen_imports(p)
        for p in root.rglob("*.py")
        if p.name not in TEST_HELPERS
    }
    assert {p: m for p, m in found.items() if m - SHARED} == {}
    assert found["data/store.py"] == {"drrgen.store_contract"}


def test_the_shared_modules_load_neither_numba_nor_torch():
    modules = ", ".join(sorted(SHARED))
    code = f"import sys, {modules}; print(sorted({{'numba', 'torch'}} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stderr
