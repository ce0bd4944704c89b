"""infra/bicep against the ARM models of the Azure management SDKs (tests/infra/arm_check.py).

``test_templates_match_arm_models`` runs the check on the real templates; ``test_arm_check_catches``
breaks one thing in a copy of them per kind of mistake and requires the check to report exactly
that, at the line of the mistake. The models come from ``.venv-arm/arm-models.json``, which
``make arm-models`` writes (``make test`` and ``make pytest`` do it first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.infra.arm_check import NO_MODEL, check_arm, load_arm_models, problems, walk
from tests.infra.bicep import BICEP_DIR, Model, load_model, named_children, source_text

ARM_PYTHON = ROOT / ".venv-arm" / "bin" / "python"


@pytest.fixture(scope="session")
def arm() -> dict[str, Any]:
    return load_arm_models()


@pytest.fixture(scope="session")
def model() -> Model:
    return load_model()


def test_templates_match_arm_models(model: Model, arm: dict[str, Any]) -> None:
    report = check_arm(model, arm)
    for type_api, places in sorted(report.unmodelled.items()):
        print(f"no model for {type_api} ({', '.join(places)}): {NO_MODEL.get(type_api, 'unexpected')}")
    found = problems(report, arm)
    assert not found, "\n".join(found)
    assert set(report.unmodelled) == set(NO_MODEL)
    # Every body of a modelled type was checked: the walk reached them all.
    bodies = [r for r in model.all_resources() if not r.existing]
    modelled = [r for r in bodies if f"{r.type}@{r.api_version}" in arm["types"]]
    checked = sum(len(places) for places in report.checked.values())
    assert checked == len(modelled) == len(bodies) - len(NO_MODEL)


def test_models_come_from_the_pinned_sdks(arm: dict[str, Any]) -> None:
    pins = {}
    for line in (ROOT / "infra" / "arm-models.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    assert arm["packages"], "no SDK package recorded"
    for package, version in arm["packages"].items():
        assert pins.get(package) == version, f"{package} {version} is not the pin in infra/arm-models.txt"


def test_stale_models_file_fails(model: Model, arm: dict[str, Any]) -> None:
    stale = json.loads(json.dumps(arm))
    stale["inputs"]["infra/arm_models.py"] = "0" * 64
    assert "older than infra/arm_models.py: run `make arm-models`" in "\n".join(
        problems(check_arm(model, stale), stale)
    )


def _run_arm_python(code: str) -> subprocess.CompletedProcess[str]:
    assert ARM_PYTHON.is_file(), f"{ARM_PYTHON.relative_to(ROOT)} is missing: `make arm-models` installs it"
    return subprocess.run(
        [str(ARM_PYTHON), "-c", code], cwd=ROOT / "infra", capture_output=True, text=True, timeout=120, check=False
    )


def test_dumper_takes_only_the_exact_api_version() -> None:
    """infra/arm_models.py refuses a model whose SDK folder is of another API version."""
    proc = _run_arm_python(
        "import arm_models as m\nm.MODELS = {'Microsoft.Web/sites@2024-11-01': m.Body(m.WEB, 'Site')}\nm.dump()\n"
    )
    assert proc.returncode != 0
    assert "Microsoft.Web/sites@2024-11-01: azure.mgmt.web.v2024_04_01.models is of API version 2024-04-01" in (
        proc.stderr
    ), proc.stderr[-2000:]


def test_every_property_name_is_checked(tmp_path: Path, model: Model, arm: dict[str, Any]) -> None:
    """Renaming any property of any modelled resource body is reported, at its line: the walk
    reaches every name, nested ones and those in arrays and subtypes too."""
    copy = tmp_path / "bicep"
    shutil.copytree(BICEP_DIR, copy)
    renamed = 0
    for rel, template in model.templates.items():
        source = template.path.read_bytes()
        for resource in template.resources:
            if resource.existing or f"{resource.type}@{resource.api_version}" in NO_MODEL:
                continue
            for node in walk(resource.body):
                key = named_children(node)[0] if node.type == "object_property" else None
                if key is None or key.type != "identifier" or named_children(node)[-1].type == "resource_declaration":
                    continue  # string keys are the free-form keys of dictionaries (tags, identities)
                if node.parent == resource.body and source_text(key) in {"name", "parent", "scope", "dependsOn"}:
                    continue
                (copy / rel).write_bytes(source[: key.end_byte] + b"Zq" + source[key.end_byte :])
                found = problems(check_arm(load_model(copy), arm), arm)
                line = f"bicep/{rel}:{key.start_point[0] + 1}: {resource.type}@{resource.api_version}: "
                assert any(p.startswith(line) and f"{source_text(key)}Zq: unknown property" in p for p in found), (
                    f"renamed {source_text(key)} at {line}: {found}"
                )
                renamed += 1
        (copy / rel).write_bytes(source)
    assert renamed > 100, renamed


def test_values_it_cannot_reduce_pass(tmp_path: Path, arm: dict[str, Any]) -> None:
    """A discriminator or value computed by a function is not known here: no finding, no guess."""
    copy = tmp_path / "bicep"
    shutil.copytree(BICEP_DIR, copy)
    target = copy / "modules" / "event-subscription.bicep"
    source = target.read_text(encoding="utf-8")
    for text, replacement in (
        ("endpointType: 'AzureFunction'", "endpointType: toUpper('AzureFunction')"),
        ("maxEventsPerBatch: 1", "maxEventsPerBatch: int('1')"),
    ):
        assert source.count(text) == 1
        source = source.replace(text, replacement)
    target.write_text(source, encoding="utf-8")
    assert problems(check_arm(load_model(copy), arm), arm) == []


# --- the check catches each kind of mistake ---------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    file: str  # in infra/bicep
    text: str  # found exactly once
    replacement: str
    expected: str  # "<subject>: <path>: <message>" of the finding, or a problem line of a failed check
    line_of: str | None = None  # the finding is on the line of this text (default: the replacement's)
    finding_in: str | None = None  # the file the finding is in (default: the mutated file)


SITE = "Microsoft.Web/sites@2024-04-01"
SUBSCRIPTION = "Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15"
STORAGE = "Microsoft.Storage/storageAccounts@2023-05-01"
ACS = "Microsoft.Communication/communicationServices@2023-04-01"

MUTATIONS = {
    # Unknown property names.
    "misspelled": Mutation(
        "modules/function-app.bicep",
        "scaleAndConcurrency: {",
        "scaleAndConcurency: {",
        f"{SITE}: properties.functionAppConfig.scaleAndConcurency: unknown property; did you mean scaleAndConcurrency?",
    ),
    "not in this api version": Mutation(  # sshEnabled came with Microsoft.Web 2024-11-01
        "modules/function-app.bicep",
        "    httpsOnly: true\n",
        "    sshEnabled: false\n    httpsOnly: true\n",
        f"{SITE}: properties.sshEnabled: unknown property",
    ),
    "wrong case": Mutation(
        "modules/monitoring.bicep",
        "DisableLocalAuth: true",
        "disableLocalAuth: true",
        "Microsoft.Insights/components@2020-02-02: properties.disableLocalAuth: unknown property; "
        "did you mean DisableLocalAuth?",
    ),
    "top level": Mutation(  # a plan's sku on the site
        "modules/function-app.bicep",
        "  kind: 'functionapp,linux'\n",
        "  kind: 'functionapp,linux'\n  sku: {\n    name: 'FC1'\n  }\n",
        f"{SITE}: sku: unknown property",
        line_of="  sku: {\n    name: 'FC1'\n  }\n",
    ),
    "in an array item": Mutation(
        "modules/event-subscription.bicep",
        "key: 'data.to.PhoneNumber.Value'",
        "keys: 'data.to.PhoneNumber.Value'",
        f"{SUBSCRIPTION}: properties.filter.advancedFilters[0].keys: unknown property; did you mean key?",
    ),
    "of another subtype": Mutation(  # a WebHook destination's property on an AzureFunction one
        "modules/event-subscription.bicep",
        "        maxEventsPerBatch: 1\n",
        "        endpointUrl: 'https://example.invalid/'\n        maxEventsPerBatch: 1\n",
        f"{SUBSCRIPTION}: properties.destination.properties.endpointUrl: unknown property",
    ),
    "computed name": Mutation(
        "modules/storage.bicep",
        "    accessTier: 'Hot'",
        "    '${name}': 'Hot'",
        f"{STORAGE}: properties.${{name}}: a computed name where properties has fixed property names",
    ),
    # Read-only properties.
    "read-only": Mutation(
        "modules/acs.bicep",
        "    dataLocation: dataLocation\n",
        "    dataLocation: dataLocation\n    hostName: '${name}.communication.azure.com'\n",
        f"{ACS}: properties.hostName: read-only property: Azure sets it, a template cannot",
        line_of="    hostName:",
    ),
    "response only": Mutation(  # in StorageAccount, not in the StorageAccountCreateParameters of a PUT
        "modules/storage.bicep",
        "    accessTier: 'Hot'\n",
        "    accessTier: 'Hot'\n    primaryLocation: location\n",
        f"{STORAGE}: properties.primaryLocation: read-only property",
        line_of="    primaryLocation:",
    ),
    # Discriminators.
    "wrong endpointType": Mutation(
        "modules/event-subscription.bicep",
        "endpointType: 'AzureFunction'",
        "endpointType: 'AzureFunctions'",
        f"{SUBSCRIPTION}: properties.destination.endpointType: 'AzureFunctions' is none of ['AzureFunction', "
        "'EventHub', 'HybridConnection', 'MonitorAlert', 'NamespaceTopic', 'ServiceBusQueue', 'ServiceBusTopic', "
        "'StorageQueue', 'WebHook']; did you mean AzureFunction?",
    ),
    "wrong dead-letter endpointType": Mutation(
        "modules/event-subscription.bicep",
        "endpointType: 'StorageBlob'",
        "endpointType: 'StorageBlobs'",
        f"{SUBSCRIPTION}: properties.deadLetterWithResourceIdentity.deadLetterDestination.endpointType: "
        "'StorageBlobs' is none of ['StorageBlob']; did you mean StorageBlob?",
    ),
    "wrong operatorType": Mutation(
        "modules/event-subscription.bicep",
        "operatorType: 'StringIn'",
        "operatorType: 'StringsIn'",
        f"{SUBSCRIPTION}: properties.filter.advancedFilters[0].operatorType: 'StringsIn' is none of",
    ),
    "missing endpointType": Mutation(
        "modules/event-subscription.bicep",
        "        endpointType: 'StorageBlob'\n",
        "",
        f"{SUBSCRIPTION}: properties.deadLetterWithResourceIdentity.deadLetterDestination.endpointType: "
        "missing: DeadLetterDestination needs it to be one of ['StorageBlob']",
        line_of="deadLetterDestination: {",
    ),
    "wrong config name": Mutation(
        "modules/function-app.bicep",
        "name: 'appsettings'",
        "name: 'appsetings'",
        "Microsoft.Web/sites/config@2024-04-01: name: 'appsetings' is none of",
    ),
    # Values of the wrong shape, also through variables, union() and module arguments.
    "string for an int": Mutation(
        "modules/event-subscription.bicep",
        "maxEventsPerBatch: 1",
        "maxEventsPerBatch: '1'",
        f"{SUBSCRIPTION}: properties.destination.properties.maxEventsPerBatch: a str literal where the model has int",
        line_of="'1'",
    ),
    "object for a string": Mutation(
        "modules/function-app.bicep",
        "      minTlsVersion: '1.2'\n",
        "      minTlsVersion: {\n        value: '1.2'\n      }\n",
        f"{SITE}: properties.siteConfig.minTlsVersion: an object where the model has str",
        line_of="{\n        value",
    ),
    "through union of variables": Mutation(
        "modules/function-app.bicep",
        "  HANDOFF_CONFIG: 'routing.yaml'\n",
        "  HANDOFF_CONFIG: {\n    path: 'routing.yaml'\n  }\n",
        "Microsoft.Web/sites/config@2024-04-01: properties.HANDOFF_CONFIG: an object where the model has str",
        line_of="{\n    path",
    ),
    "through a module argument": Mutation(
        "main.bicep",
        "  'azd-env-name': environmentName\n",
        "  'azd-env-name': {\n    name: environmentName\n  }\n",
        "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31: tags.azd-env-name: "
        "an object where the model has str",
        line_of="{\n    name: environmentName",
        finding_in="main.bicep",
    ),
    # Reads of resource properties.
    "read of a misspelled property": Mutation(
        "modules/acs.bicep",
        "'https://${created.properties.hostName}/'",
        "'https://${created.properties.hostname}/'",
        f"{ACS}: created.properties.hostname: unknown property; did you mean hostName?",
    ),
    "read from an existing resource": Mutation(
        "modules/function-app.bicep",
        "storage.properties.primaryEndpoints.blob",
        "storage.properties.primaryEndpoint.blob",
        f"{STORAGE}: storage.properties.primaryEndpoint: unknown property; did you mean primaryEndpoints?",
    ),
    # Modules.
    "unknown module parameter": Mutation(
        "main.bicep",
        "    deadlineSeconds: deadlineSeconds\n",
        "    deadlineSecond: deadlineSeconds\n",
        "module functionApp: params.deadlineSecond: not a parameter of bicep/modules/function-app.bicep; "
        "did you mean deadlineSeconds?",
    ),
    "missing module parameter": Mutation(
        "main.bicep",
        "    acsId: acs.outputs.id\n",
        "",
        "module eventTopic: params: missing acsId, a parameter without a default",
        line_of="module eventTopic ",
    ),
    "unknown module output": Mutation(
        "main.bicep",
        "functionApp.outputs.defaultHostName",
        "functionApp.outputs.defaultHostname",
        "module functionApp: outputs.defaultHostname: not an output of bicep/modules/function-app.bicep; "
        "did you mean defaultHostName?",
    ),
    # A resource whose exact API version has no model is noticed, not checked against another's.
    "api version without a model": Mutation(
        "modules/identity.bicep",
        "userAssignedIdentities@2023-01-31",
        "userAssignedIdentities@2024-11-30",
        "bicep/modules/identity.bicep:14: Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30: "
        "no model of this exact API version in infra/arm_models.py",
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_arm_check_catches(tmp_path: Path, arm: dict[str, Any], name: str) -> None:
    mutation = MUTATIONS[name]
    copy = tmp_path / "bicep"
    shutil.copytree(BICEP_DIR, copy)
    target = copy / mutation.file
    source = target.read_text(encoding="utf-8")
    assert source.count(mutation.text) == 1, f"mutation target not found once in {mutation.file}: {mutation.text!r}"
    at = source.index(mutation.text)
    mutated = source.replace(mutation.text, mutation.replacement)
    target.write_text(mutated, encoding="utf-8")

    report = check_arm(load_model(copy), arm)
    found = problems(report, arm)
    # The unmutated templates pass (test_templates_match_arm_models); the mutated one must not.
    assert found, f"{name}: the check passed a template with this mistake"
    if "no model" in mutation.expected:
        assert mutation.expected in found, "\n".join(found)
        return
    marker = mutation.line_of or mutation.replacement.strip().splitlines()[0]
    start = mutated.find(marker, at) if mutated.find(marker, at) >= 0 else mutated.index(marker)
    line = mutated.count("\n", 0, start) + 1
    finding_in = mutation.finding_in or mutation.file
    expected = f"bicep/{finding_in}:{line}: {mutation.expected}"
    assert any(problem.startswith(expected) for problem in found), f"expected {expected!r} in:\n" + "\n".join(found)
