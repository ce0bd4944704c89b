"""Dump the ARM models of the resource types infra/bicep deploys, from the Azure management SDKs.

No Bicep compiler runs here, so nothing else checks a resource body against its type: the
Azure management SDKs on PyPI are generated from the same REST specs as Bicep's types and carry
one model per resource body and API version. This script runs in .venv-arm (the SDK versions
pinned in infra/arm-models.txt; the Makefile installs them), imports the model of each
``type@apiVersion`` in :data:`MODELS` and writes them as one JSON file that
tests/infra/arm_check.py reads, so the checks and their mutation tests run in the main venv.

Each model is taken from the SDK folder of exactly that API version, and the script fails unless
that folder's ``_configuration.py`` says so too (``kwargs.pop("api_version", "2024-04-01")``):
the SDKs come in two layouts, one folder per API version (``azure/mgmt/web/v2024_04_01``) or one
API version per release (``azure/mgmt/eventgrid``), and the configuration names it in both.

The pinned SDKs are all of the msrest generation: a model class lists its wire properties in
``_attribute_map`` (``properties.serverFarmId`` for the flattened ``properties`` bag), read-only
ones in ``_validation`` and the subtypes of a polymorphic model in ``_subtype_map``. A model of
another generation (``rest_field``) stops the script; support it when a pinned SDK needs it.

The JSON (``--out``)::

    {"packages": {"azure-mgmt-web": "8.0.0", ...},
     "inputs": {"infra/arm_models.py": "<sha256>", "infra/arm-models.txt": "<sha256>"},
     "types": {"Microsoft.Web/sites@2024-04-01": {"model": "<ref>"},
               "Microsoft.Web/sites/config@2024-04-01": {"by_name": {"appsettings": "<ref>", ...}}},
     "models": {"<ref>": {"fields": {"<wire name>": {"type": <type>, "readonly": bool}},
                          "discriminator": null | {"key": "endpointType", "values": {"AzureFunction": "<ref>"}}}}}

where a <type> is a scalar name (``"str"``, ``"int"``, ``"any"`` for ``object``...), ``{"model": ref}``,
``{"array": type}``, ``{"dict": type}`` (free-form keys), or ``{"fields": {...}}`` for a bag the SDK
flattened (``properties``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "infra" / "arm-models.txt"


@dataclass(frozen=True)
class Body:
    """The model of a resource body in an SDK models module.

    ``response`` names the model of the GET response where the SDK has a separate one for the
    PUT body (``StorageAccountCreateParameters`` / ``StorageAccount``): properties only the
    response has are read-only in the body.
    """

    module: str
    model: str
    response: str | None = None


@dataclass(frozen=True)
class ByName:
    """A resource type whose body depends on its name (``Microsoft.Web/sites/config``)."""

    module: str
    models: dict[str, str] = field(default_factory=dict)


WEB = "azure.mgmt.web.v2024_04_01.models"
STORAGE = "azure.mgmt.storage.v2023_05_01.models"

#: type@apiVersion -> its model. The model of a body is the parameter type of the SDK's
#: create_or_update (or the PUT operation named in the comment).
MODELS: dict[str, Body | ByName] = {
    "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31": Body(
        "azure.mgmt.msi.v2023_01_31.models", "Identity"
    ),
    # StorageAccountsOperations.begin_create takes StorageAccountCreateParameters; the account's
    # read-only properties (primaryEndpoints...) are only in StorageAccount.
    "Microsoft.Storage/storageAccounts@2023-05-01": Body(STORAGE, "StorageAccountCreateParameters", "StorageAccount"),
    "Microsoft.Storage/storageAccounts/blobServices@2023-05-01": Body(STORAGE, "BlobServiceProperties"),
    "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01": Body(STORAGE, "BlobContainer"),
    "Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01": Body(STORAGE, "ManagementPolicy"),
    # TableServicesOperations.set_service_properties takes TableServiceProperties; TableOperations.create
    # takes Table (the call records' table).
    "Microsoft.Storage/storageAccounts/tableServices@2023-05-01": Body(STORAGE, "TableServiceProperties"),
    "Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01": Body(STORAGE, "Table"),
    "Microsoft.Insights/components@2020-02-02": Body(
        "azure.mgmt.applicationinsights.v2020_02_02.models", "ApplicationInsightsComponent"
    ),
    "Microsoft.Insights/workbooks@2023-06-01": Body("azure.mgmt.applicationinsights.v2023_06_01.models", "Workbook"),
    "Microsoft.Communication/communicationServices@2023-04-01": Body(
        "azure.mgmt.communication.models", "CommunicationServiceResource"
    ),
    "Microsoft.Web/serverfarms@2024-04-01": Body(WEB, "AppServicePlan"),
    "Microsoft.Web/sites@2024-04-01": Body(WEB, "Site"),
    # The body of a sites/config resource is the model of the WebAppsOperations method that PUTs
    # that name: update_application_settings, update_auth_settings(_v2), update_azure_storage_accounts,
    # update_backup_configuration, update_connection_strings, update_diagnostic_logs_config,
    # update_metadata, update_site_push_settings, update_slot_configuration_names, and
    # create_or_update_configuration for 'web'.
    "Microsoft.Web/sites/config@2024-04-01": ByName(
        WEB,
        {
            "appsettings": "StringDictionary",
            "authsettings": "SiteAuthSettings",
            "authsettingsV2": "SiteAuthSettingsV2",
            "azurestorageaccounts": "AzureStoragePropertyDictionaryResource",
            "backup": "BackupRequest",
            "connectionstrings": "ConnectionStringDictionary",
            "logs": "SiteLogsConfig",
            "metadata": "StringDictionary",
            "pushsettings": "PushSettings",
            "slotConfigNames": "SlotConfigNamesResource",
            "web": "SiteConfigResource",
        },
    ),
    "Microsoft.EventGrid/systemTopics@2025-02-15": Body("azure.mgmt.eventgrid.models", "SystemTopic"),
    "Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15": Body(
        "azure.mgmt.eventgrid.models", "EventSubscription"
    ),
    # RoleAssignmentsOperations.create takes RoleAssignmentCreateParameters.
    "Microsoft.Authorization/roleAssignments@2022-04-01": Body(
        "azure.mgmt.authorization.v2022_04_01.models", "RoleAssignmentCreateParameters", "RoleAssignment"
    ),
}

#: msrest's scalar type names (msrest.serialization.Serializer.basic_types and the date/bytes
#: formats), as the checks see them; ``object`` is anything.
SCALARS = {
    "str": "str",
    "int": "int",
    "long": "int",
    "float": "float",
    "decimal": "float",
    "bool": "bool",
    "iso-8601": "str",
    "rfc-1123": "str",
    "duration": "str",
    "date": "str",
    "time": "str",
    "unix-time": "int",
    "bytearray": "str",
    "base64": "str",
    "object": "any",
}

API_VERSION = re.compile(r'kwargs\.pop\("api_version", "([^"]+)"\)')


def api_version_of(models_module: str) -> str:
    """The API version the SDK package holding ``models_module`` sends, from its _configuration.py."""
    package = importlib.import_module(models_module.rsplit(".", 1)[0])
    config = Path(package.__file__ or "").parent / "_configuration.py"
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    found: set[str] = set(API_VERSION.findall(text))
    if len(found) != 1:
        raise SystemExit(f"{models_module}: cannot tell its API version from {config}: {sorted(found)}")
    return found.pop()


def distribution_of(models_module: str) -> str:
    return "-".join(models_module.split(".")[:3])  # azure.mgmt.web.v2024_04_01.models -> azure-mgmt-web


def split_key(key: str) -> list[str]:
    """``properties.serverFarmId`` -> [properties, serverFarmId]; msrest escapes a literal dot as ``\\.``."""
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key)]


class Dumper:
    def __init__(self) -> None:
        self.models: dict[str, Any] = {}

    def ref(self, module: Any, name: str) -> str:
        """Dump model ``name`` of ``module`` (and every model it reaches) once; its reference."""
        ref = f"{module.__name__}:{name}"
        if ref in self.models:
            return ref
        cls = getattr(module, name, None)
        attribute_map = getattr(cls, "_attribute_map", None)
        if not isinstance(attribute_map, dict):
            raise SystemExit(f"{ref}: no msrest _attribute_map (another SDK generation?): not supported")
        entry: dict[str, Any] = {"fields": {}, "discriminator": None}
        self.models[ref] = entry  # before the fields: models refer to themselves (SiteConfig...)
        validation = getattr(cls, "_validation", {}) or {}
        for attr, spec in attribute_map.items():
            *bags, wire = split_key(spec["key"])
            fields = entry["fields"]
            for bag in bags:
                holder = fields.setdefault(bag, {"type": {"fields": {}}, "readonly": False})
                if "fields" not in holder["type"]:
                    raise SystemExit(f"{ref}: {spec['key']} flattens into {bag}, which is not a bag")
                fields = holder["type"]["fields"]
            readonly = bool(validation.get(attr, {}).get("readonly"))
            fields[wire] = {"type": self.type_of(module, spec["type"], ref), "readonly": readonly}
        subtypes = cls.__dict__.get("_subtype_map")
        if subtypes:
            ((attr, values),) = subtypes.items()
            entry["discriminator"] = {
                "key": attribute_map[attr]["key"],
                "values": {value: self.ref(module, sub) for value, sub in sorted(values.items())},
            }
        return ref

    def type_of(self, module: Any, spec: str, where: str) -> Any:
        if spec.startswith("[") and spec.endswith("]"):
            return {"array": self.type_of(module, spec[1:-1], where)}
        if spec.startswith("{") and spec.endswith("}"):
            return {"dict": self.type_of(module, spec[1:-1], where)}
        if spec in SCALARS:
            return SCALARS[spec]
        if hasattr(module, spec):
            return {"model": self.ref(module, spec)}
        raise SystemExit(f"{where}: unknown msrest type {spec!r}")


def merge_response(fields: dict[str, Any], response: dict[str, Any]) -> None:
    """Add the properties only the response model has to a body's fields, as read-only."""
    for name, spec in response.items():
        mine = fields.get(name)
        if mine is None:
            fields[name] = {"type": spec["type"], "readonly": True}
        elif isinstance(mine["type"], dict) and "fields" in mine["type"] and "fields" in spec["type"]:
            merge_response(mine["type"]["fields"], spec["type"]["fields"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dump() -> dict[str, Any]:
    dumper = Dumper()
    types: dict[str, Any] = {}
    packages: dict[str, str] = {}
    for type_api, source in MODELS.items():
        api = type_api.rsplit("@", 1)[1]
        found = api_version_of(source.module)
        if found != api:
            raise SystemExit(f"{type_api}: {source.module} is of API version {found}, not {api}")
        module = importlib.import_module(source.module)
        dist = distribution_of(source.module)
        packages[dist] = metadata.version(dist)
        if isinstance(source, ByName):
            types[type_api] = {"by_name": {name: dumper.ref(module, model) for name, model in source.models.items()}}
            continue
        ref = dumper.ref(module, source.model)
        if source.response is not None:
            body = json.loads(json.dumps(dumper.models[ref]))  # a copy: the model itself may be shared
            merge_response(body["fields"], dumper.models[dumper.ref(module, source.response)]["fields"])
            ref = f"{ref}+{source.response}"
            dumper.models[ref] = body
        types[type_api] = {"model": ref}
    return {
        "packages": dict(sorted(packages.items())),
        "inputs": {
            path.relative_to(ROOT).as_posix(): sha256(path) for path in (Path(__file__).resolve(), REQUIREMENTS)
        },
        "types": types,
        "models": dumper.models,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dump the ARM models of the types infra/bicep deploys.")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    data = dump()
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"arm-models: {len(data['types'])} resource types, {len(data['models'])} models from {data['packages']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
