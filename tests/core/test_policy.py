"""ACL policies decide as Vault 1.15 does: the scenarios of tests/core/testdata/acl.txt, plus properties checked with
hypothesis (the order of an ACL's policies never changes a decision) and a few plain checks.

Scenario commands (POLICIES is a comma-separated list of names, `-` for none; `default` and `root` exist):
    policy NAME            the HCL or JSON text on the following lines -> ok, or the InvalidRequest
    delete NAME            the policy store's delete check -> ok (and forgets it), or the InvalidRequest
    entity NAME=VALUE...   identity template values for the ACLs built after it
    capabilities POLICIES PATH...          one `PATH: capabilities` line per path
    check POLICIES PATH OP [KEY=VALUE | KEY:=JSON]... [--sudo] [--wrap-ttl=SECONDS]
                           -> allowed, or permission denied
    rules POLICIES         the merged rules of the ACL: kind, pattern, capabilities, constraints
"""

import json
import os
import pathlib
import random
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.core import policy
from vaultd.sdk.errors import InternalError, InvalidRequest, PermissionDenied

from .. import datadriven

testdata = pathlib.Path(__file__).parent / "testdata"


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("SEED", "1"))
    print(f"SEED={seed}")
    return random.Random(seed)


class Scenario:
    def __init__(self):
        self.policies = {
            "default": policy.parse_policy("default", policy.DEFAULT_POLICY_HCL),
            "root": policy.ROOT_POLICY,
        }
        self.template_values: dict[str, str] = {}

    def handle(self, command: str) -> str:
        first, _, body = command.partition("\n")
        name, *arguments = shlex.split(first)
        try:
            if name == "policy":
                return self.do_policy(arguments[0], body)
            return getattr(self, "do_" + name)(*arguments)
        except (InvalidRequest, InternalError) as error:
            return f"error: {type(error).__name__}: {'; '.join(error.messages)}"

    def acl(self, names: str) -> policy.ACL:
        chosen = [] if names == "-" else [self.policies[policy.normalize_policy_name(n)] for n in names.split(",")]
        return policy.ACL(chosen, self.template_values)

    def do_policy(self, name: str, text: str) -> str:
        parsed = policy.parse_policy(name, text)
        policy.check_policy_writable(name)
        self.policies[parsed.name] = parsed
        return f"ok: {parsed.name}" + (" (templated)" if parsed.templated else "")

    def do_delete(self, name: str) -> str:
        policy.check_policy_deletable(name)
        self.policies.pop(policy.normalize_policy_name(name), None)
        return "ok"

    def do_entity(self, *assignments: str) -> str:
        self.template_values = dict(assignment.split("=", 1) for assignment in assignments)
        return "ok"

    def do_capabilities(self, names: str, *paths: str) -> str:
        acl = self.acl(names)
        return "\n".join(f"{path}: {' '.join(acl.capabilities(path))}" for path in paths)

    def do_check(self, names: str, path: str, operation: str, *words: str) -> str:
        data, options = {}, {}
        for word in words:
            if word == "--sudo":
                options["sudo_required"] = True
            elif word.startswith("--wrap-ttl="):
                options["wrapping_ttl_seconds"] = float(word.partition("=")[2])
            elif ":=" in word:
                key, _, value = word.partition(":=")
                data[key] = json.loads(value)
            else:
                key, _, value = word.partition("=")
                data[key] = value
        try:
            self.acl(names).check(path, operation, data, **options)
        except PermissionDenied as error:
            return error.messages[0]
        return "allowed"

    def do_rules(self, names: str) -> str:
        acl, lines = self.acl(names), []
        for kind, table in [("exact", acl.exact_rules), ("prefix", acl.prefix_rules),
                            ("segment", acl.segment_wildcard_rules)]:
            for pattern, permissions in sorted(table.items()):
                line = f"{kind} {pattern!r}: {' '.join(sorted(permissions.capabilities)) or '<none>'}"
                for field in ("allowed_parameters", "denied_parameters", "required_parameters",
                              "min_wrapping_ttl_seconds", "max_wrapping_ttl_seconds"):
                    if value := getattr(permissions, field):
                        line += f" {field}={json.dumps(value, sort_keys=True)}"
                lines.append(line)
        return "\n".join(lines) or "<no rules>"


# Only this module's scenario files: tests/core/testdata also holds other modules' scenarios.
@pytest.mark.parametrize("path", [testdata / "acl.txt"], ids=lambda path: path.name)
def test_scenario(path):
    datadriven.run(path, Scenario().handle)


def test_default_policy_is_vaults():
    default = policy.parse_policy("Default", policy.DEFAULT_POLICY_HCL)
    assert default.name == "default" and default.templated and default.raw == policy.DEFAULT_POLICY_HCL
    assert [rules.path for rules in default.paths] == [
        "auth/token/lookup-self", "auth/token/renew-self", "auth/token/revoke-self", "sys/capabilities-self",
        "identity/entity/id/{{identity.entity.id}}", "identity/entity/name/{{identity.entity.name}}",
        "sys/internal/ui/resultant-acl", "sys/renew", "sys/leases/renew", "sys/leases/lookup", "cubbyhole/*",
        "sys/wrapping/wrap", "sys/wrapping/lookup", "sys/wrapping/unwrap", "sys/tools/hash",
        "sys/tools/hash/*", "sys/control-group/request", "identity/oidc/provider/+/authorize",
    ]
    wrapping = policy.ACL([policy.parse_policy("response-wrapping", policy.RESPONSE_WRAPPING_POLICY_HCL)])
    assert wrapping.capabilities("cubbyhole/response") == ["create", "read"]


def test_json_and_hcl_spellings_parse_to_the_same_rules():
    hcl_text = """
        path "secret/+/config*" {
          capabilities = ["read", "update"]
          allowed_parameters = { "Mode" = ["fast", "slow*"] }
          required_parameters = ["mode"]
          max_wrapping_ttl = "1h"
        }
    """
    json_text = json.dumps({"path": {"secret/+/config*": {
        "capabilities": ["read", "update"], "allowed_parameters": {"Mode": ["fast", "slow*"]},
        "required_parameters": ["mode"], "max_wrapping_ttl": 3600}}})
    assert policy.parse_policy("a", hcl_text).paths == policy.parse_policy("a", json_text).paths


def test_root_must_stand_alone_and_unknown_operations_are_bugs():
    with pytest.raises(InternalError, match="other policies present along with root"):
        policy.ACL([policy.ROOT_POLICY, policy.parse_policy("default", policy.DEFAULT_POLICY_HCL)])
    with pytest.raises(AssertionError):
        policy.ACL([]).check("secret/a", "write")


def test_a_denial_carries_vaults_message():
    with pytest.raises(PermissionDenied) as raised:
        policy.ACL([]).check("secret/a", "read")
    assert raised.value.messages == ["permission denied"]


def test_parsing_never_fails_with_anything_but_invalid_request(rng):
    pieces = ['path "a/*" {', "}", "capabilities", "=", '["read"]', "[", "]", "{{", "}}", '"', "+", "*", "a+1",
              "allowed_parameters", "{", '"k"', "=", "[]", "deny", "policy", "1", "true", ",", "\n", "#", "a.b",
              "min_wrapping_ttl", '"1h"', "path", "name", ":", "<<EOT\nx\nEOT\n", "(", "?"]
    for _ in range(1000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12)))
        try:
            policy.parse_policy("fuzz", text)
        except InvalidRequest as error:
            assert error.messages[0].startswith("failed to parse policy: ")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.sampled_from(["read", "deny", "write", "1h", "7d", "x", "*", "{{a}}", "+*", "a/*"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["k", "K", "*"]), children),
    max_leaves=8,
)
_json_bodies = st.dictionaries(st.sampled_from(sorted(policy.path_rule_keys | {"bogus"})), _json_values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(
    st.sampled_from(["path", "name", "bogus"]),
    st.dictionaries(st.sampled_from(["a/*", "+/b", "c", "{{x}}/y"]), _json_bodies | _json_values) | _json_values,
    max_size=2,
))
def test_any_json_document_parses_or_fails_with_invalid_request(document):
    try:
        policy.parse_policy("fuzz", json.dumps(document))
    except InvalidRequest as error:
        assert error.messages[0].startswith("failed to parse policy: ")


_patterns = ["secret/*", "secret/a", "secret/a/*", "secret/+/b", "secret/+/*", "secret/+", "+/a", "secret/a/"]
_paths = ["secret/a", "secret/a/b", "secret/x/b", "secret/", "secret/a/", "z/a", "secret"]
_capability_lists = st.lists(st.sampled_from(sorted(policy.capability_names)), max_size=3)
_parameter_maps = st.none() | st.dictionaries(
    st.sampled_from(["k", "K", "m", "*"]), st.lists(st.sampled_from(["v", "v*", "*w", "x"]), max_size=2), max_size=2
)
_rules = st.fixed_dictionaries(
    {"capabilities": _capability_lists},
    optional={"allowed_parameters": _parameter_maps, "denied_parameters": _parameter_maps,
              "required_parameters": st.lists(st.sampled_from(["k", "m"]), max_size=2)},
)
_policy_texts = st.dictionaries(st.sampled_from(_patterns), _rules, max_size=4).map(
    lambda paths: json.dumps({"path": {p: {k: v for k, v in r.items() if v is not None} for p, r in paths.items()}})
)


def _decisions(acl: policy.ACL) -> list:
    decisions = []
    for path in _paths:
        decisions.append(acl.capabilities(path))
        for operation in ["read", "update", "list", "delete"]:
            for data in [{}, {"k": "v"}, {"k": "vw", "m": "x"}]:
                try:
                    acl.check(path, operation, data, sudo_required=operation == "delete")
                    decisions.append(True)
                except PermissionDenied:
                    decisions.append(False)
    return decisions


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(_policy_texts, min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_the_order_of_policies_never_changes_a_decision(texts, seed):
    policies = [policy.parse_policy(f"p{index}", text) for index, text in enumerate(texts)]
    shuffled = policies[:]
    random.Random(seed).shuffle(shuffled)
    assert _decisions(policy.ACL(policies)) == _decisions(policy.ACL(shuffled))


@settings(max_examples=100, deadline=None)
@given(text=_policy_texts)
def test_a_policy_merged_with_itself_decides_as_it_does_alone(text):
    alone = policy.parse_policy("p", text)
    assert _decisions(policy.ACL([alone])) == _decisions(policy.ACL([alone, policy.parse_policy("q", text)]))
