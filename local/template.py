"""Read template.yaml, so local resources are created from the template's own definitions and cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub ...) turned into their long forms."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)  # noqa: S506
    return loaded


def resource(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][logical_id]
    return found


def table_create_args(template: dict[str, Any], logical_id: str, table_name: str) -> dict[str, Any]:
    """CreateTable arguments from an AWS::DynamoDB::Table resource: keys, attributes, indexes, billing mode.

    Encryption, point-in-time recovery and deletion protection are account features DynamoDB Local does not have.
    """
    props = resource(template, logical_id)["Properties"]
    args: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": present(template, props["AttributeDefinitions"]),
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = present(template, props["GlobalSecondaryIndexes"])
    stream = props.get("StreamSpecification") or {}
    if stream.get("StreamViewType"):
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return args


def function_timeout(template: dict[str, Any], logical_id: str) -> float:
    function = resource(template, logical_id)["Properties"]
    timeout = function.get("Timeout") or template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    return float(timeout)


def parameter_default(template: dict[str, Any], name: str) -> Any:
    return template["Parameters"][name]["Default"]


def resolved(template: dict[str, Any], value: Any) -> Any:
    """A property value with `Ref` to a parameter (its default) and `Fn::FindInMap` worked out; anything else as is."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template.get("Parameters", {}):
        return parameter_default(template, value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        mapping, top, second = (resolved(template, part) for part in value["Fn::FindInMap"])
        return template["Mappings"][mapping][str(top)][second]
    return value


def present(template: dict[str, Any], items: list[Any]) -> list[Any]:
    """A list property as deployed with the parameters' defaults: each `Fn::If` element worked out, `AWS::NoValue` left
    out."""
    kept = []
    for item in items:
        if isinstance(item, dict) and set(item) == {"Fn::If"}:
            name, when_true, when_false = item["Fn::If"]
            item = when_true if condition(template, name) else when_false
        if item != {"Ref": "AWS::NoValue"}:
            kept.append(item)
    return kept


def condition(template: dict[str, Any], name: str) -> bool:
    """A template condition with the parameters' defaults (`Fn::Equals` and `Fn::Not` only: anything else raises)."""

    def evaluate(expression: Any) -> bool:
        if set(expression) == {"Fn::Equals"}:
            left, right = (resolved(template, part) for part in expression["Fn::Equals"])
            return str(left) == str(right)
        if set(expression) == {"Fn::Not"}:
            return not evaluate(expression["Fn::Not"][0])
        raise NotImplementedError(f"condition not emulated locally: {sorted(expression)}")

    return evaluate(template["Conditions"][name])


def time_to_live_attribute(template: dict[str, Any], logical_id: str) -> str | None:
    spec = resource(template, logical_id)["Properties"].get("TimeToLiveSpecification") or {}
    return str(spec["AttributeName"]) if spec.get("Enabled") else None
