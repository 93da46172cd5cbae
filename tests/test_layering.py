"""The import contract of DESIGN.md, checked on every module with `ast`.

Dependencies point down only. For each package: which of the repo's packages it may import, which
third-party distributions it may import, and that pysyncobj is imported nowhere but raft/node.py. The
checker is itself tested on synthetic modules, so a broken checker cannot pass silently.
"""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "raft", "vaultd", "jepsen_lite")
STDLIB = set(sys.stdlib_module_names)

# package prefix -> (repo modules it may import, third-party top-level modules it may import).
# The longest matching prefix rules. A repo module is allowed if it equals or sits below an allowed prefix.
CONTRACT = {
    "storage": ({"storage"}, {"msgpack", "sortedcontainers"}),
    "raft": ({"raft", "storage"}, {"msgpack", "pysyncobj"}),
    "vaultd": ({"vaultd"}, set()),
    "vaultd.sdk": ({"vaultd.sdk"}, set()),
    "vaultd.engines": ({"vaultd.engines", "vaultd.sdk"}, {"cryptography"}),
    "vaultd.core": (
        {"vaultd.core", "vaultd.sdk", "vaultd.clock", "vaultd.limits", "storage"},
        {"cryptography", "msgpack", "hcl", "pkcs11", "prometheus_client", "sortedcontainers"},
    ),
    "vaultd.http": (
        {"vaultd.http", "vaultd.core", "vaultd.sdk", "vaultd.limits", "raft.errors", "storage.errors"},
        {"aiohttp", "prometheus_client", "multidict", "yarl"},
    ),
    "vaultd.app": ({"vaultd", "raft", "storage"}, {"aiohttp", "uvloop", "prometheus_client"}),
    "vaultd.cluster": ({"vaultd", "raft", "storage"}, {"aiohttp", "msgpack"}),
    "vaultd.__main__": ({"vaultd", "raft", "storage"}, {"aiohttp", "uvloop"}),
    "jepsen_lite": ({"jepsen_lite"}, {"aiohttp", "matplotlib"}),
}
PYSYNCOBJ_ONLY_IN = "raft.node"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of everything `module` imports, relative imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names.add(prefix)
            if node.level:
                names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def rule_for(module: str) -> tuple[set[str], set[str]]:
    best = max((prefix for prefix in CONTRACT if module == prefix or module.startswith(prefix + ".")), key=len)
    return CONTRACT[best]


def within(name: str, prefixes: set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(module: str, imports: set[str]) -> list[str]:
    repo_allowed, third_party_allowed = rule_for(module)
    found = []
    for name in sorted(imports):
        top = name.split(".")[0]
        if top == "pysyncobj" and module != PYSYNCOBJ_ONLY_IN:
            found.append(f"{module} imports pysyncobj; only {PYSYNCOBJ_ONLY_IN} may")
        elif top in PACKAGES:
            # `from . import x` in a package adds the package itself; that is not a dependency
            if not within(name, repo_allowed) and not within(module, {name}):
                found.append(f"{module} imports {name}")
        elif top not in STDLIB and top not in third_party_allowed:
            found.append(f"{module} imports third-party {name}")
    return found


def repo_modules():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_every_module_keeps_the_import_contract():
    problems = []
    checked = 0
    for path in repo_modules():
        module = module_name(path)
        imports = imported_modules(path.read_text(), module, path.name == "__init__.py")
        problems += violations(module, imports)
        checked += 1
    assert checked >= 10, "the layering test found too few modules to be looking in the right place"
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("storage.log_store", "import raft", "storage.log_store imports raft"),
        ("storage.log_store", "from vaultd.core import barrier", "storage.log_store imports vaultd.core"),
        ("storage.log_store", "import aiohttp", "storage.log_store imports third-party aiohttp"),
        ("raft.backend", "import pysyncobj", "raft.backend imports pysyncobj; only raft.node may"),
        ("vaultd.engines.kv", "from ..core import tokens", "vaultd.engines.kv imports vaultd.core"),
        ("vaultd.core.seal", "from vaultd.http import errors", "vaultd.core.seal imports vaultd.http"),
        ("jepsen_lite.checker", "import storage.record", "jepsen_lite.checker imports storage.record"),
    ],
)
def test_the_checker_catches_a_crossing(module, source, expected):
    imports = imported_modules(source, module, is_package=False)
    assert expected in violations(module, imports)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("raft.node", "import pysyncobj\nimport storage"),
        ("storage.log_store", "from . import limits"),
        ("vaultd.http.server", "from storage.errors import StorageError"),
    ],
)
def test_the_checker_allows_what_the_contract_allows(module, source):
    assert violations(module, imported_modules(source, module, is_package=False)) == []
