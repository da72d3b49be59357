"""template.yaml as CloudFormation deploys it, in a pretend account and region, and each recorded call as IAM sees it.

- `deployed()`: the template expanded by aws-sam-translator (the library `sam deploy` uses: its roles with the managed
  policies SAM attaches for each event source and for Tracing, Globals, the event sources' own resources), after what
  `sam package` does (code in S3), with every Ref, GetAtt, Sub and condition resolved to the pretend stack's names
  and ARNs, and its parameters at their defaults.
- `Deployed.request(call)`: a recorded call (local.aws_calls) as IAM requests: the actions it needs, each with its
  resource ARN and the context keys IAM's conditions read.

Evaluation itself is @cloud-copilot/iam-simulate's (tests/iam/simulate.cjs), never this file's.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "docdrop"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5e1f7a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
KEY_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK,
    "AWS::StackId": STACK_ID,
    "AWS::URLSuffix": "amazonaws.com",
}
NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::CloudTrail::Trail": "TrailName",
}


class NoValue:
    """AWS::NoValue: the property is left out."""


def expand(template_text: str) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` submits for this SAM template (after `sam package`)."""
    import boto3
    from samtranslator.parser.parser import Parser  # type: ignore[import-untyped]
    from samtranslator.translator.translator import Translator  # type: ignore[import-untyped]
    from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

    template = yaml_parse(template_text)
    for resource in template["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):  # `sam package` has put the code in S3 by the time of the transform
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = f"s3://pretend-artifacts/{uri}"

    session = boto3.session.Session(region_name=REGION)  # the region of the pretend account; nothing is called
    translator = Translator(None, Parser(), boto_session=session)
    # Every managed policy the template names is an ARN already: no lookup of names (which would call IAM).
    return dict(translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: {}))


@dataclasses.dataclass
class Deployed:
    """The expanded template, resolved in the pretend account (module docstring)."""

    template: dict[str, Any]
    stack: str = STACK
    given: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # parameter values other than the defaults

    def __post_init__(self) -> None:
        self.parameters = {name: p.get("Default", "") for name, p in self.template.get("Parameters", {}).items()}
        unknown = set(self.given) - set(self.parameters)
        assert not unknown, f"template.yaml has no parameter {sorted(unknown)}"
        self.parameters.update(self.given)
        for name, declared in self.template.get("Parameters", {}).items():  # a list parameter's Ref is a list
            if declared.get("Type") == "CommaDelimitedList" and isinstance(self.parameters[name], str):
                self.parameters[name] = [v.strip() for v in self.parameters[name].split(",")]
        self.parameters.update(PSEUDO)
        self.parameters.update({"AWS::StackName": self.stack, "AWS::StackId": STACK_ID.replace(STACK, self.stack, 1)})
        self.conditions: dict[str, bool] = {}
        for name in self.template.get("Conditions", {}):
            self.condition(name)
        self.resources = {
            logical: resource
            for logical, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    # ----- names and ARNs ---------------------------------------------------------------------------------------------
    def type_of(self, logical: str) -> str:
        return str(self.resources[logical]["Type"])

    def name(self, logical: str) -> str:
        resource = self.resources[logical]
        prop = NAME_PROPERTY.get(resource["Type"])
        given = resource.get("Properties", {}).get(prop) if prop else None
        return str(self.resolve(given)) if given is not None else f"{self.stack[:20]}-{logical[:20]}-PRETEND1234"

    def ref(self, logical: str) -> Any:
        if logical in self.parameters:
            value = self.parameters[logical]
            return value if isinstance(value, list) else str(value)
        kind = self.type_of(logical)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(logical)}"
        if kind in (
            "AWS::SecretsManager::Secret",
            "AWS::SNS::Topic",
            "AWS::Lambda::LayerVersion",
            "AWS::IAM::ManagedPolicy",
        ):
            return self.arn(logical)
        if kind == "AWS::KMS::Key":
            return KEY_ID
        if kind == "AWS::ApiGatewayV2::Api":
            return "pretendapi1"
        return self.name(logical)

    def arn(self, logical: str) -> str:
        kind, name = self.type_of(logical), self.name(logical)
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT}:policy/{name}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}",
            "AWS::Scheduler::Schedule": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{name}",
            "AWS::Lambda::LayerVersion": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:1",
            "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}",
            "AWS::CloudTrail::Trail": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{name}",
        }.get(kind, f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:pretend/{logical}")

    def get_att(self, logical: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical)
        if attribute == "StreamArn":
            return f"{self.arn(logical)}/stream/2026-12-01T00:00:00.000"
        if attribute in ("QueueName", "TopicName", "Name"):
            return self.name(logical)
        if attribute == "QueueUrl":
            return str(self.ref(logical))
        if attribute == "ApiEndpoint":
            return f"https://{self.ref(logical)}.execute-api.{REGION}.amazonaws.com"
        if attribute == "KeyId":
            return KEY_ID
        raise KeyError(f"GetAtt {logical}.{attribute}: not known to tests/iam/deployed.py")

    # ----- intrinsic functions ----------------------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if not isinstance(v, NoValue)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return NoValue() if arg == "AWS::NoValue" else self.ref(arg)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: str(self._sub(m.group(1), names)), text)
            if fn == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if fn == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if fn == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::FindInMap":
                first, second, third = (str(self.resolve(a)) for a in arg)
                return self.template["Mappings"][first][second][third]
            if fn == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b"]
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if not isinstance(v, NoValue)}

    def _sub(self, name: str, names: Mapping[str, Any]) -> Any:
        if name in names:
            return names[name]
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self.get_att(logical, attribute)
        return self.ref(name)

    # ----- policies ---------------------------------------------------------------------------------------------------
    def properties(self, logical: str) -> dict[str, Any]:
        resolved: dict[str, Any] = self.resolve(copy.deepcopy(self.resources[logical].get("Properties", {})))
        return resolved

    def of_type(self, kind: str) -> list[str]:
        return [logical for logical, r in self.resources.items() if r["Type"] == kind]

    def role_of(self, function: str) -> str:
        role = self.resources[function]["Properties"]["Role"]
        return str(role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"].split(".")[0])

    def identity_policies(self, role: str) -> tuple[list[dict[str, Any]], list[str]]:
        """The role's inline policies (resolved, the stack's own managed policies among them), and the ARNs of the AWS
        managed policies attached to it."""
        properties = self.properties(role)
        inline = [{"name": p["PolicyName"], "policy": p["PolicyDocument"]} for p in properties.get("Policies", [])]
        managed = list(properties.get("ManagedPolicyArns", []))
        for logical in self.of_type("AWS::IAM::ManagedPolicy"):
            attached = self.properties(logical)
            if self.name(role) in attached.get("Roles", []):
                inline.append({"name": logical, "policy": attached["PolicyDocument"]})
        return inline, managed

    def resource_policies(self) -> dict[str, dict[str, Any]]:
        """Resource ARN (or ARN prefix, ending in '/*') -> its resource policy: bucket, queues, the key, topics."""
        found: dict[str, dict[str, Any]] = {}
        for logical in self.of_type("AWS::S3::BucketPolicy"):
            properties = self.properties(logical)
            found[f"arn:aws:s3:::{properties['Bucket']}"] = properties["PolicyDocument"]
        for logical in self.of_type("AWS::SQS::QueuePolicy"):
            properties = self.properties(logical)
            for url in properties["Queues"]:
                name = str(url).rsplit("/", 1)[1]
                found[f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"] = properties["PolicyDocument"]
        for logical in self.of_type("AWS::SNS::TopicPolicy"):
            properties = self.properties(logical)
            for topic in properties["Topics"]:
                found[str(topic)] = properties["PolicyDocument"]
        for logical in self.of_type("AWS::KMS::Key"):
            found[self.arn(logical)] = self.properties(logical)["KeyPolicy"]
        for logical in self.of_type("AWS::SecretsManager::ResourcePolicy"):
            properties = self.properties(logical)
            found[str(properties["SecretId"])] = properties["ResourcePolicy"]
        for logical in self.of_type("AWS::Lambda::Permission"):  # a function's policy: one statement per permission
            properties = self.properties(logical)
            function = str(properties["FunctionName"])
            if not function.startswith("arn:"):
                function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
            statement: dict[str, Any] = {
                "Effect": "Allow",
                "Principal": {"Service": properties["Principal"]},
                "Action": properties["Action"],
                "Resource": function,
            }
            if "SourceArn" in properties:
                statement["Condition"] = {"ArnLike": {"aws:SourceArn": properties["SourceArn"]}}
            policy = found.setdefault(function, {"Version": "2012-10-17", "Statement": []})
            policy["Statement"].append(statement)
        return found


@functools.cache
def deployed() -> Deployed:
    return Deployed(expand((ROOT / "template.yaml").read_text()))
