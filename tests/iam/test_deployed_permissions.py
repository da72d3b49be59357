"""Deployed as tested: every AWS call the code made in this run is allowed by the policies template.yaml deploys, and
every action a role or an operator policy grants was used by some call, or is justified in the template.

The functions' calls are checked against their roles; each `docdrop` command's (tests/cli) against the operator
policies its user has: the read-only one for status, review, accounts and doctor, both for the others.

moto and DynamoDB Local allow every call, so only this check sees a permission the deployed role lacks. The calls are
the ones the rest of the suite made (local.aws_calls records them; this module runs last), plus the calls AWS makes for
the stack (tests/iam/requests.made_for_the_stack). The template is expanded and resolved as CloudFormation would deploy
it (tests/iam/deployed); each request is evaluated by @cloud-copilot/iam-simulate, with the identity policies, the
managed policies SAM attaches, and the resource policies (key, bucket, queues).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
from collections import defaultdict
from typing import Any

import pytest

from local import aws_calls
from tests.conftest import AWS_CALLS
from tests.iam.deployed import Deployed, deployed
from tests.iam.requests import (
    OPERATOR,
    OPERATOR_POLICY,
    READ_ONLY_POLICY,
    Request,
    for_call,
    made_for_the_stack,
    managed_policy,
    operator_policies,
    simulate,
)

FUNCTIONS = ("UploaderFunction", "WebhookFunction", "OutcomeJoinerFunction", "ReconcilerFunction")
UNUSED_GRANTS = "GrantedNotCalled"  # a function's or policy's Metadata: {action: the one-line reason it is granted}


@functools.cache
def _calls() -> tuple[dict[str, Any], ...]:
    calls = aws_calls.read(AWS_CALLS)
    if not calls:
        pytest.fail(
            "no AWS call was recorded: tests/iam checks the calls the rest of the suite makes; run the whole suite"
        )
    assert aws_calls.errors() is None, f"the call recorder broke: {aws_calls.errors()}"
    return tuple(calls)


def _requests(template: Deployed) -> list[Request]:
    """Every recorded call of the functions and of the CLI's commands, as IAM requests, and the calls AWS makes."""
    mine = [c for c in _calls() if c["function"] in FUNCTIONS or c["function"].startswith(OPERATOR)]
    found = [r for call in mine for r in for_call(call, template)]
    return list(dict.fromkeys(found + made_for_the_stack(template)))


def _denied(template: Deployed, requests: list[Request]) -> list[str]:
    results = simulate(requests, template)
    return [
        f"{r.principal} may not {r.action} on {r.resource}" + (f" ({r.why})" if r.why else "")
        for r, result in zip(requests, results, strict=True)
        if result != "Allowed"
    ]


def test_each_function_and_a_new_stacks_first_reconciler_pass_are_among_the_recorded_calls() -> None:
    calls = _calls()
    assert {c["function"] for c in calls} >= set(FUNCTIONS)
    commands = sorted({c["function"] for c in calls if c["function"].startswith(OPERATOR)})
    assert len(commands) >= 8, f"the CLI's commands recorded: {commands}"
    counts = {
        f: len({(c["service"], c["operation"]) for c in calls if c["function"] == f}) for f in [*FUNCTIONS, *commands]
    }
    print("\ndistinct calls (service, operation) recorded: " + ", ".join(f"{f} {n}" for f, n in counts.items()))
    # The one-off indexing pass of a new stack's ledger (DocumentLedger.index_open_items) reads the whole table.
    assert any(c["function"] == "ReconcilerFunction" and c["operation"] == "Scan" for c in calls)


def test_every_recorded_call_and_every_call_aws_makes_for_the_stack_is_allowed_by_the_deployed_policies() -> None:
    template = deployed()
    denied = _denied(template, _requests(template))
    assert not denied, "denied on AWS, though moto and DynamoDB Local allowed it:\n" + "\n".join(denied)


def test_the_check_fails_when_a_role_lacks_a_permission_its_code_uses() -> None:
    """The net is real: the reconciler's Scan without its grant is denied (as it was on the template before #24)."""
    template = deployed()
    without = copy.deepcopy(template.template)
    for statement in _statements(without["Resources"][template.role_of("ReconcilerFunction")]):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        statement["Action"] = [a for a in actions if a != "dynamodb:Scan"] or ["dynamodb:DescribeTable"]
    scans = [r for r in _requests(template) if r.principal == "ReconcilerFunction" and r.action == "dynamodb:Scan"]
    assert scans
    denied = _denied(Deployed(without), scans)
    assert denied and all("ReconcilerFunction may not dynamodb:Scan" in d for d in denied)


def test_every_granted_action_is_used_by_a_recorded_call_or_justified_in_the_template() -> None:
    template = deployed()
    used: dict[str, set[str]] = defaultdict(set)
    for request in _requests(template):
        for holder in _holders(template, request.principal):
            used[holder].add(request.action)
    table, unjustified = [], []
    for holder in [*FUNCTIONS, READ_ONLY_POLICY, OPERATOR_POLICY]:
        granted = _granted(template, holder)
        reasons = template.resources[holder].get("Metadata", {}).get(UNUSED_GRANTS, {})
        unused = sorted(g for g in granted if not any(fnmatch.fnmatchcase(a, g) for a in used[holder]))
        unjustified += [f"{holder}: {action}" for action in unused if action not in reasons]
        stale = sorted(set(reasons) - set(unused))
        assert not stale, f"{holder} justifies grants it no longer has, or now uses: {stale}"
        table.append(f"| {holder} | {', '.join(sorted(used[holder]))} | {', '.join(sorted(granted))} |")
    print("\n| who | actions used | actions granted |\n|---|---|---|\n" + "\n".join(table))
    assert not unjustified, (
        "granted, and used by no recorded call: remove it, or give its reason in the function's Metadata "
        f"{UNUSED_GRANTS}:\n" + "\n".join(unjustified)
    )


def _holders(template: Deployed, principal: str) -> list[str]:
    """Whose grants a request counts as using: its function's (by its role); a read-only command's, the read-only
    policy's; another command's, the operator policy's (a grant only such commands use belongs there, not in the
    read-only policy that people who only watch get)."""
    if principal.startswith(OPERATOR):
        return list(operator_policies(principal))[-1:]
    return [principal]


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def _granted(template: Deployed, holder: str) -> set[str]:
    """Every action a function's role, or an operator policy, allows, as written (a pattern stays a pattern); the
    managed policies SAM attaches included."""
    if template.type_of(holder) == "AWS::IAM::ManagedPolicy":
        documents = [template.properties(holder)["PolicyDocument"]]
    else:
        inline, managed = template.identity_policies(template.role_of(holder))
        documents = [p["policy"] for p in inline] + [managed_policy(arn) for arn in managed]
    granted: set[str] = set()
    for document in documents:
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow":
                actions = statement["Action"]
                granted.update([actions] if isinstance(actions, str) else actions)
    return granted
