"""Offline checks of infra/bicep: syntax, dialect, and the wiring no linter sees.

No Bicep compiler runs here. Every template is parsed with tree-sitter-bicep and read through a
small evaluator (literals, objects, arrays, string interpolation, variables, parameter defaults,
module arguments, ``union``); anything else stays an expression whose source text is kept, so a
check can still tell *what* a value is wired to (``acs.outputs.immutableResourceId``).

Each ``check_*`` function asserts one piece of wiring against its source of truth
(shared/adapters/settings.py, function_app.py, the handbook's role ids). The ``test_*`` functions run them
on the real templates, and ``test_check_catches_mutation`` runs them on mutated copies: every
check must fail on a template that breaks what it guards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tree_sitter import Node

from local.funcignore import FuncIgnore
from local.package import DEFAULT_OUTPUT
from shared.adapters.settings import BY_NAME, SETTINGS
from tests.conftest import ROOT, START_SETTINGS, run_python
from tests.infra.bicep import (
    BICEP_DIR,
    Model,
    Module,
    Resource,
    Scope,
    Template,
    Ternary,
    evaluate,
    key_of,
    load_model,
    named_children,
    prop,
    rendered,
    source_text,
    string_literal,
)

#: App settings the Functions host and platform read (not Handoff's code), with why each is set.
#: The Bicep's ``platformAppSettings`` must be exactly these; ``codeAppSettings`` exactly the
#: ``in_azure`` settings of shared/adapters/settings.py.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName": "host storage, identity-based: the account",
    "AzureWebJobsStorage__credential": "host storage, identity-based: 'managedidentity'",
    "AzureWebJobsStorage__clientId": "host storage, identity-based: which user-assigned identity",
}

#: Settings Flex Consumption ignores or rejects (the runtime is in functionAppConfig), and the
#: key-based ones this deployment must not fall back to.
FORBIDDEN_SETTINGS = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_EXTENSION_VERSION",
    "linuxFxVersion",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "APPINSIGHTS_INSTRUMENTATIONKEY",
    "AzureWebJobsStorage",  # a connection string; the identity-based form uses AzureWebJobsStorage__*
)

#: Built-in role definition ids -> the resource type each may be assigned on.
ROLE_SCOPES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Microsoft.Storage/storageAccounts",  # Storage Blob Data Owner
    "3913510d-42f4-4e42-8a64-420c390055eb": "Microsoft.Insights/components",  # Monitoring Metrics Publisher
    # Communication and Email Service Owner
    "09976791-48a7-449e-bb21-39d1a415f350": "Microsoft.Communication/communicationServices",
    # Storage Blob Data Contributor, for the system topic's dead-lettering
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Microsoft.Storage/storageAccounts/blobServices/containers",
    # Storage Table Data Contributor, for the app's call records: that one table, never the account
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Microsoft.Storage/storageAccounts/tableServices/tables",
}
#: The role of the call records (HANDOFF_STORE): the app's identity, on the call records' table.
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"

#: Consecutive comment lines pycep (checkov's Bicep parser) accepts inside an object: with five it
#: fails on the whole file ("Unexpected token _CPP_COMMENT_NL"), seen with checkov 3.3.30.
MAX_COMMENT_LINES_IN_OBJECT = 4

#: Node kinds checkov's Bicep parser (pycep) does not handle: it would skip the whole file.
UNPARSEABLE_BY_CHECKOV = {
    "array_type": "typed array (string[])",
    "nullable_type": "nullable type",
    "nullable_return_type": "nullable return type",
    "lambda_expression": "lambda",
    "import_statement": "import",
    "import_functionality": "import",
    "import_with_statement": "import",
    "user_defined_function": "func",
    "type_declaration": "user-defined type",
    "union_type": "union type",
    "parameterized_type": "resourceInput<>/resourceOutput<>",
    "assert_statement": "assert",
    "test_block": "test",
}

# --- facts from the function app --------------------------------------------------------------

_FUNCTION_FACTS_SCRIPT = """
import json, function_app
functions = []
for fn in function_app.app.get_functions():
    trigger = fn.get_trigger()
    functions.append({
        "name": fn.get_function_name(),
        "trigger": trigger.type if trigger else None,
        "route": getattr(trigger, "route", None),
        "auth": str(trigger.get_dict_repr().get("authLevel")) if trigger else None,
    })
print(json.dumps(functions))
"""


@dataclass(frozen=True)
class FunctionFacts:
    event_grid_functions: tuple[str, ...]
    http_routes: tuple[str, ...]
    route_prefix: str
    anonymous_routes: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def function_facts() -> FunctionFacts:
    """Import function_app in a child process (it starts the app at import) and list its triggers."""
    proc = run_python(
        ["-c", _FUNCTION_FACTS_SCRIPT],
        START_SETTINGS,
    )
    assert proc.returncode == 0, f"importing function_app failed:\n{proc.stderr[-3000:]}"
    functions = json.loads(proc.stdout.strip().splitlines()[-1])
    host = ROOT / "host.json"
    prefix = "api"
    if host.is_file():
        prefix = json.loads(host.read_text()).get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return FunctionFacts(
        event_grid_functions=tuple(f["name"] for f in functions if f["trigger"] == "eventGridTrigger"),
        http_routes=tuple(f["route"] or f["name"] for f in functions if f["trigger"] == "httpTrigger"),
        route_prefix=prefix,
        anonymous_routes=tuple(
            f["route"] or f["name"]
            for f in functions
            if f["trigger"] == "httpTrigger" and str(f["auth"]).upper().endswith("ANONYMOUS")
        ),
    )


# --- the checks -------------------------------------------------------------------------------


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def check_parses(model: Model) -> None:
    assert "main.bicep" in model.templates
    for name, template in model.templates.items():
        bad = [
            f"{n.type} at {n.start_point[0] + 1}:{n.start_point[1] + 1}"
            for n in _walk(template.root)
            if n.is_error or n.is_missing
        ]
        assert not bad, f"{name}: syntax errors: {bad[:5]}"


def check_modules_exist_and_are_used(model: Model) -> None:
    used = set()
    for template in model.templates.values():
        for module in template.modules.values():
            assert module.path.is_file(), f"{template.path.name}: module {module.path} does not exist"
            used.add(module.path.relative_to(model.directory).as_posix())
    orphans = set(model.templates) - used - {"main.bicep"}
    assert not orphans, f"modules nothing deploys: {sorted(orphans)}"


def check_checkov_dialect(model: Model) -> None:
    for name, template in model.templates.items():
        found = [
            f"{UNPARSEABLE_BY_CHECKOV[n.type]} at line {n.start_point[0] + 1}"
            for n in _walk(template.root)
            if n.type in UNPARSEABLE_BY_CHECKOV
        ]
        found += [f"'{n.type}' at line {n.start_point[0] + 1}" for n in _walk(template.root) if n.type in (".?", "??")]
        found += [
            f"{run} comment lines in a row inside an object at line {line} (at most {MAX_COMMENT_LINES_IN_OBJECT})"
            for line, run in _comment_runs_in_objects(template.root)
            if run > MAX_COMMENT_LINES_IN_OBJECT
        ]
        assert not found, f"{name}: syntax checkov's parser cannot read: {found}"


def _comment_runs_in_objects(root: Node) -> Iterator[tuple[int, int]]:
    """(first line, length) of each run of consecutive comment lines directly inside an object."""
    for node in _walk(root):
        if node.type != "object":
            continue
        start, run, previous = 0, 0, -2
        for child in node.named_children:
            line = child.start_point[0]
            if child.type == "comment" and line == previous + 1 and run:
                run, previous = run + 1, line
                continue
            if run:
                yield start + 1, run
            start, run, previous = (line, 1, line) if child.type == "comment" else (0, 0, -2)
        if run:
            yield start + 1, run


def check_param_descriptions(model: Model) -> None:
    for name, template in model.templates.items():
        assert template.params or name != "main.bicep", "main.bicep has no parameters?"
        for param in template.params:
            args = template.decorator_args(param, "description")
            assert args, f"{name}: param {param} has no @description"
            assert len(string_literal(args[0]).strip()) >= 10, f"{name}: param {param}: empty description"


def _subscription(model: Model) -> tuple[Module, dict[str, Any], Scope]:
    subs = [
        (symbol, module)
        for symbol, module in model.main.modules.items()
        if any(
            r.type == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
            for r in model.templates[module.path.relative_to(model.directory).as_posix()].resources
        )
    ]
    assert len(subs) == 1, f"expected one module with the event subscription, found {len(subs)}"
    symbol, module = subs[0]
    template, args = model.module(symbol)
    resource = template.resource("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    return module, evaluate(resource.body, Scope(template, args)), Scope(template, args)


def check_event_subscription(model: Model, facts: FunctionFacts) -> None:
    module, sub, _ = _subscription(model)
    props = sub["properties"]
    # Second pass only, behind a bool parameter that defaults to false.
    assert module.condition is not None, "the event subscription must be created only in the second pass"
    condition = source_text(module.condition).strip("() ")
    assert condition in model.main.params, f"subscription condition {condition!r} is not a parameter"
    assert source_text(model.main.param_default(condition) or module.condition) == "false"

    assert props["destination"]["endpointType"] == "AzureFunction"
    resource_id = rendered(props["destination"]["properties"]["resourceId"])
    function_name = resource_id.rsplit("/functions/", 1)[-1]
    assert resource_id.endswith(f"/functions/{function_name}") and "${" not in function_name, resource_id
    assert facts.event_grid_functions == (function_name,), (
        f"subscription targets function {function_name!r}, function_app.py registers Event Grid "
        f"trigger(s) {facts.event_grid_functions}"
    )
    site_output = resource_id.removesuffix(f"/functions/{function_name}")
    match = re.fullmatch(r"\$\{(\w+)\.outputs\.(\w+)\}", site_output)
    assert match, f"destination must be <function app module output>/functions/<name>: {resource_id}"
    site_template, _ = model.module(match.group(1))
    site = site_template.resource("Microsoft.Web/sites")
    assert source_text(site_template.outputs[match.group(2)]) == f"{site.symbol}.id"

    filt = props["filter"]
    assert filt["includedEventTypes"] == ["Microsoft.Communication.IncomingCall"]
    filters = filt["advancedFilters"]
    assert len(filters) == 1, filters
    assert filters[0]["key"] == "data.to.PhoneNumber.Value"
    assert filters[0]["operatorType"] == "StringIn"
    assert "ivrTransferNumbers" in rendered(filters[0]["values"]), "filter values must come from the numbers param"
    assert props["eventDeliverySchema"] == "EventGridSchema"


def check_retry_and_dead_letter(model: Model) -> None:
    _, sub, _ = _subscription(model)
    props = sub["properties"]
    assert props["retryPolicy"] == {"maxDeliveryAttempts": 2, "eventTimeToLiveInMinutes": 1}
    assert "deadLetterDestination" not in props, "dead-letter with the topic's identity, not a key/SAS"
    dead = props["deadLetterWithResourceIdentity"]
    assert dead["identity"] == {"type": "SystemAssigned"}
    destination = dead["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"
    assert rendered(destination["properties"]["resourceId"]) == "${storage.outputs.id}"
    assert rendered(destination["properties"]["blobContainerName"]) == "${storage.outputs.deadLetterContainerName}"
    storage_template, _ = model.module("storage")
    containers = [r.symbol for r in storage_template.resources if r.type.endswith("/containers")]
    assert source_text(storage_template.outputs["deadLetterContainerName"]) in {f"{c}.name" for c in containers}


def check_system_topic(model: Model) -> None:
    template, args = model.module("eventTopic")
    topic = evaluate(template.resource("Microsoft.EventGrid/systemTopics").body, Scope(template, args))
    assert topic["location"] == "global"
    assert topic["identity"] == {"type": "SystemAssigned"}
    assert topic["properties"]["topicType"] == "Microsoft.Communication.CommunicationServices"
    assert rendered(topic["properties"]["source"]) == "${acs.outputs.id}"


def _name_of(resource: Resource) -> Any:
    name = prop(resource.body, "name")
    return Scope(resource.template).eval(name) if name is not None else None


def _app_settings(model: Model) -> tuple[dict[str, Any], dict[str, Any]]:
    configs = [
        r for r in model.all_resources() if r.type == "Microsoft.Web/sites/config" and _name_of(r) == "appsettings"
    ]
    assert len(configs) == 1, f"app settings must be set in exactly one place, found {len(configs)}"
    for template in model.templates.values():
        keys = [n for n in _walk(template.root) if n.type == "object_property" and key_of(n) == "appSettings"]
        assert not keys, f"{template.path.name}: siteConfig.appSettings would be a second list"
    config = configs[0]
    template, args = model.module("functionApp")
    assert config.template is template
    value = prop(config.body, "properties")
    assert value is not None and value.type == "call_expression" and source_text(value.named_children[0]) == "union"
    names = [source_text(a) for a in named_children(value.named_children[1])]
    assert names == ["platformAppSettings", "codeAppSettings"], f"expected union(platform, code): {names}"
    scope = Scope(template, args)
    platform = scope.lookup("platformAppSettings")
    code = scope.lookup("codeAppSettings")
    assert isinstance(platform, dict) and isinstance(code, dict)
    return platform, code


def check_app_setting_names(model: Model) -> None:
    platform, code = _app_settings(model)
    in_azure = {s.name for s in SETTINGS if s.in_azure}
    assert set(code) == in_azure, (
        f"code settings differ from shared/adapters/settings.py in_azure: missing {sorted(in_azure - set(code))}, "
        f"read by nothing {sorted(set(code) - in_azure)}"
    )
    assert set(platform) == set(PLATFORM_SETTINGS), (
        f"platform settings differ from the documented list: {sorted(set(platform) ^ set(PLATFORM_SETTINGS))}"
    )
    local_only = {s.name for s in SETTINGS if not s.in_azure}
    assert not (set(platform) | set(code)) & local_only


def check_app_setting_values(model: Model, facts: FunctionFacts) -> None:
    platform, code = _app_settings(model)
    template, _ = model.module("functionApp")
    site = template.resource("Microsoft.Web/sites")
    routes = [r for r in facts.http_routes if r.strip("/") == "callbacks"]
    assert routes, f"function_app.py has no HTTP trigger at route 'callbacks': {facts.http_routes}"
    # HANDOFF_CALLBACK_URL carries no function key, and Call Automation cannot send one.
    assert routes[0] in facts.anonymous_routes, "the callbacks trigger must be anonymous (it checks the JWT)"
    assert rendered(code["HANDOFF_CALLBACK_URL"]) == (
        f"https://${{{site.symbol}.properties.defaultHostName}}/{facts.route_prefix}/callbacks"
    )
    assert rendered(code["ACS_ENDPOINT"]) == "${acs.outputs.endpoint}"
    assert rendered(code["ACS_RESOURCE_ID"]) == "${acs.outputs.immutableResourceId}"
    acs_template, _ = model.module("acs")
    assert "properties.immutableResourceId" in source_text(acs_template.outputs["immutableResourceId"])
    assert "properties.hostName" in source_text(acs_template.outputs["endpoint"])
    assert rendered(code["AZURE_CLIENT_ID"]) == "${identity.outputs.clientId}"
    identity_template, _ = model.module("identity")
    assert source_text(identity_template.outputs["clientId"]).endswith(".properties.clientId")
    assert code["HANDOFF_CONFIG"] == "routing.yaml"
    assert code["HANDOFF_DEADLINE_SECONDS"] == "10", "HANDOFF_DEADLINE_SECONDS: parameter, default '10'"
    assert rendered(code["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]) == (
        "ClientId=${identity.outputs.clientId};Authorization=AAD"
    )
    assert rendered(code["APPLICATIONINSIGHTS_CONNECTION_STRING"]).endswith(".properties.ConnectionString}")
    # The call records: the endpoint of the account the storage module creates (the account this
    # module's `storage` is), its table, and the two durations with the defaults the app reads.
    account = template.resource("Microsoft.Storage/storageAccounts", existing=True)
    assert rendered(code["HANDOFF_STORE"]) == f"${{{account.symbol}.properties.primaryEndpoints.table}}", (
        f"HANDOFF_STORE must be the account's table endpoint: {rendered(code['HANDOFF_STORE'])}"
    )
    assert model.module_arg_text("functionApp", "storageAccountName") == "storage.outputs.name"
    assert rendered(code["HANDOFF_STORE_TABLE"]) == "${storage.outputs.callsTableName}"
    for name in ("HANDOFF_CONTEXT_TTL_HOURS", "HANDOFF_TRANSFER_TIMEOUT_SECONDS"):
        assert code[name] == BY_NAME[name].default, f"{name}: parameter, default {BY_NAME[name].default!r}"
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert rendered(platform["AzureWebJobsStorage__clientId"]) == "${identity.outputs.clientId}"
    assert rendered(platform["AzureWebJobsStorage__accountName"]).endswith(".name}")


def check_role_assignments(model: Model) -> None:
    seen = {}
    for resource in model.all_resources():
        if resource.type != "Microsoft.Authorization/roleAssignments":
            continue
        where = f"{resource.template.path.name}: {resource.symbol}"
        assert "Why" in resource.comments, f"{where}: say why the role is needed, in a comment above it"
        scope = Scope(resource.template)
        body = evaluate(resource.body, scope)
        role_id = rendered(body["properties"]["roleDefinitionId"])
        role = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", role_id)
        assert len(role) == 1 and role[0] in ROLE_SCOPES, f"{where}: role {role} is not one of {list(ROLE_SCOPES)}"
        assert body["properties"]["principalType"] == "ServicePrincipal"
        target = rendered(body["scope"]).strip("${}")
        scoped = [r for r in resource.template.resources if r.symbol == target]
        assert scoped and scoped[0].type == ROLE_SCOPES[role[0]], (
            f"{where}: {role[0]} must be scoped to a {ROLE_SCOPES[role[0]]}, not {target}"
        )
        assert role[0] not in seen, f"{where}: role {role[0]} assigned twice"
        seen[role[0]] = rendered(body["properties"]["principalId"])
    assert set(seen) == set(ROLE_SCOPES), f"roles missing: {sorted(set(ROLE_SCOPES) - set(seen))}"
    # Who gets which role, as main.bicep wires the principals into the modules.
    _, rbac = model.module("rbac")
    _, acs_rbac = model.module("acsRbac")
    assert rendered(rbac["functionPrincipalId"]) == "${identity.outputs.principalId}"
    assert rendered(acs_rbac["principalId"]) == "${identity.outputs.principalId}"
    assert rendered(rbac["systemTopicPrincipalId"]) == "${eventTopic.outputs.principalId}"
    assert seen["ba92f5b4-2d11-453d-a403-e96b0029c9fe"] == "${systemTopicPrincipalId}"
    assert seen[TABLE_DATA_CONTRIBUTOR] == "${functionPrincipalId}", "the call records' role is the app's"
    check_call_records_table(model)


def check_call_records_table(model: Model) -> None:
    """The table the app's role is scoped to is the table the storage module creates, named as the app reads it."""
    storage_template, storage_args = model.module("storage")
    created = [r for r in storage_template.resources if r.type.endswith("/tableServices/tables") and not r.existing]
    assert len(created) == 1, f"storage.bicep must create one table, the call records': {len(created)}"
    table = created[0]
    name = Scope(storage_template, storage_args).eval(_prop(table, "name"))
    assert name == BY_NAME["HANDOFF_STORE_TABLE"].default, f"the table is {name!r} by default"
    assert source_text(storage_template.outputs["callsTableName"]) == f"{table.symbol}.name"

    rbac_template, rbac_args = model.module("rbac")
    assert rendered(rbac_args["callsTableName"]) == "${storage.outputs.callsTableName}", (
        "the role must be scoped to the table the storage module creates"
    )
    assert rendered(rbac_args["storageAccountName"]) == "${storage.outputs.name}"
    roles = [
        r
        for r in rbac_template.resources
        if r.type == "Microsoft.Authorization/roleAssignments"
        and TABLE_DATA_CONTRIBUTOR in rendered(evaluate(r.body, Scope(rbac_template))["properties"]["roleDefinitionId"])
    ]
    assert len(roles) == 1, f"expected one Storage Table Data Contributor assignment in rbac.bicep, found {len(roles)}"
    # scope -> the table named by the callsTableName parameter, in the 'default' table service of the
    # account named by the storageAccountName parameter.
    target = _symbol(rbac_template, source_text(_prop(roles[0], "scope")))
    assert source_text(_prop(target, "name")) == "callsTableName", "the role's table must be the callsTableName param"
    service = _symbol(rbac_template, source_text(_prop(target, "parent")))
    assert string_literal(_prop(service, "name")) == "default"
    account = _symbol(rbac_template, source_text(_prop(service, "parent")))
    assert account.type == "Microsoft.Storage/storageAccounts"
    assert source_text(_prop(account, "name")) == "storageAccountName"


def _prop(resource: Resource, name: str) -> Node:
    value = prop(resource.body, name)
    assert value is not None, f"{resource.template.path.name}: {resource.symbol} has no {name}"
    return value


def _symbol(template: Template, symbol: str) -> Resource:
    found = [r for r in template.resources if r.symbol == symbol]
    assert len(found) == 1, f"{template.path.name}: no resource {symbol}"
    return found[0]


def check_always_ready(model: Model, facts: FunctionFacts) -> None:
    template, args = model.module("functionApp")
    site = evaluate(template.resource("Microsoft.Web/sites").body, Scope(template, args))
    always_ready = site["properties"]["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"]
    entries = always_ready.when_true if isinstance(always_ready, Ternary) else always_ready
    assert isinstance(entries, list) and len(entries) == 1, always_ready
    assert [f"function:{name}" for name in facts.event_grid_functions] == [entries[0]["name"]]
    count = model.module_arg_text("functionApp", "alwaysReadyInstanceCount")
    assert count in model.main.params, "the always-ready instance count must be a parameter"
    default = model.main.param_default(count)
    assert default is not None and int(source_text(default)) >= 1, "one always-ready instance by default"


def check_storage(model: Model) -> None:
    accounts = [r for r in model.all_resources() if r.type == "Microsoft.Storage/storageAccounts" and not r.existing]
    assert accounts
    for account in accounts:
        props = evaluate(account.body, Scope(account.template))["properties"]
        assert props["allowSharedKeyAccess"] is False, "shared-key access must be off"
        assert props["allowBlobPublicAccess"] is False
        assert props["minimumTlsVersion"] == "TLS1_2"


def check_monitoring(model: Model) -> None:
    components = [r for r in model.all_resources() if r.type == "Microsoft.Insights/components" and not r.existing]
    assert components
    for component in components:
        props = evaluate(component.body, Scope(component.template))["properties"]
        assert props["DisableLocalAuth"] is True, "Application Insights local auth must be off"
        assert "WorkspaceResourceId" in props
    workbooks = [r for r in model.all_resources() if r.type == "Microsoft.Insights/workbooks"]
    assert len(workbooks) == 1
    data = source_text(prop(workbooks[0].body, "properties") or workbooks[0].body)
    match = re.search(r"loadTextContent\('([^']+)'\)", data)
    assert match, "the workbook must load its JSON with loadTextContent"
    workbook = json.loads((workbooks[0].template.path.parent / match.group(1)).read_text(encoding="utf-8"))
    assert workbook["version"] == "Notebook/1.0" and workbook["items"]
    text = json.dumps(workbook)
    assert not re.search(r"TODO|PLACEHOLDER|__\w+__|\{\{", text), "workbook.json has a placeholder"


def check_flex_app(model: Model) -> None:
    template, args = model.module("functionApp")
    scope = Scope(template, args)
    plan = evaluate(template.resource("Microsoft.Web/serverfarms").body, scope)
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True
    site = evaluate(template.resource("Microsoft.Web/sites").body, scope)
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert rendered(storage["authentication"]["userAssignedIdentityResourceId"]) == "${identity.outputs.id}"
    for tpl, param in ((model.main, "pythonVersion"), (template, "pythonVersion")):
        allowed = tpl.decorator_args(param, "allowed")
        assert allowed is not None
        assert Scope(tpl).eval(allowed[0]) == ["3.11", "3.12"], f"{tpl.path.name}: {param} allowed values"
    assert rendered(config["runtime"]["version"]) == "3.11"  # main's default, through the module
    assert site["tags"]["azd-service-name"] == Scope(model.main).lookup("serviceName")


def check_no_forbidden_settings(model: Model) -> None:
    for name, template in model.templates.items():
        for node in _walk(template.root):
            is_key = node.type == "identifier" and node.parent is not None and node.parent.type == "object_property"
            if node.type == "string_content" or is_key:
                assert source_text(node) not in FORBIDDEN_SETTINGS, (
                    f"{name}: {source_text(node)} has no place on Flex Consumption"
                )


def check_azd_files(model: Model, root: Path = ROOT) -> None:
    azure = yaml.safe_load((root / "azure.yaml").read_text(encoding="utf-8"))
    assert azure["infra"] == {"provider": "bicep", "path": "infra/bicep", "module": "main"}
    services = azure["services"]
    service_name = Scope(model.main).lookup("serviceName")
    assert list(services) == [service_name], f"azure.yaml services {list(services)} != Bicep tag {service_name}"
    service = services[service_name]
    assert (service["project"], service["language"], service["host"]) == (".", "python", "function")
    # azd deploys the package make package builds, as it is: no remote build, and never a zip of the
    # bare sources (docs/deploy.md, "The package").
    assert service.get("remoteBuild") is False, "the package ships its dependencies: remoteBuild must be false"
    package = DEFAULT_OUTPUT.relative_to(ROOT).as_posix()
    steps = [step["azd"] for step in azure["workflows"]["up"]["steps"]]
    assert steps == ["provision", f"deploy {service_name} --from-package {package}"], steps
    assert azure["hooks"]["predeploy"]["run"] == "make package"
    assert re.search(r"^package:.*\n\t\$\(PY\) -m local\.package$", (root / "Makefile").read_text(), re.M)
    assert re.search(r"\bexit 1$", service["hooks"]["prepackage"]["run"]), "azd's own packaging must be refused"
    hook = azure["hooks"]["postdeploy"]
    # Both shells: sh on Linux/macOS, pwsh on Windows (tests/infra/test_postdeploy.py compares the two scripts).
    assert (hook["posix"]["shell"], hook["windows"]["shell"]) == ("sh", "pwsh")
    hook_path = root / hook["posix"]["run"]
    assert hook_path.is_file() and os.access(hook_path, os.X_OK), f"{hook_path} missing or not executable"
    windows_path = root / hook["windows"]["run"]
    assert windows_path.is_file() and windows_path.suffix == ".ps1", f"{windows_path} missing"
    params = json.loads((model.directory / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(params) <= set(model.main.params), f"unknown parameters: {set(params) - set(model.main.params)}"
    required = {p for p in model.main.params if model.main.param_default(p) is None}
    assert required <= set(params), f"required parameters not in main.parameters.json: {required - set(params)}"
    # An azd variable's fallback (${NAME=default}) is the parameter's default too: the two spellings
    # of one default must not drift (a deploy without the variable gets the first).
    for name, entry in params.items():
        fallback = re.fullmatch(r"\$\{\w+=(.*)\}", str(entry["value"]))
        default = model.main.param_default(name)
        if fallback and default is not None:
            bicep = rendered(Scope(model.main).eval(default))
            assert fallback.group(1) == bicep, (
                f"main.parameters.json: {name} falls back to {fallback.group(1)!r}, Bicep {bicep!r}"
            )
    # The call records' settings are set under their own names (azd env set HANDOFF_CONTEXT_TTL_HOURS 48).
    for setting, param in (
        ("HANDOFF_STORE_TABLE", "callsTableName"),
        ("HANDOFF_CONTEXT_TTL_HOURS", "contextTtlHours"),
        ("HANDOFF_TRANSFER_TIMEOUT_SECONDS", "transferTimeoutSeconds"),
    ):
        assert params[param]["value"] == f"${{{setting}={BY_NAME[setting].default}}}", params[param]
    flag = params["deployEventSubscription"]["value"]
    hook_text = hook_path.read_text(encoding="utf-8")
    env_name = re.fullmatch(r"\$\{(\w+)(=.*)?\}", flag)
    assert env_name and env_name.group(1) in hook_text, "the hook must drive the deployEventSubscription parameter"
    outputs = set(model.main.outputs)
    assert {"AZURE_FUNCTION_APP_NAME", "AZURE_RESOURCE_GROUP", "AZURE_LOCATION"} <= outputs
    windows_text = windows_path.read_text(encoding="utf-8")
    assert env_name and env_name.group(1) in windows_text, "the Windows hook must drive it too"
    read = {("postdeploy.sh", v) for v in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", hook_text)}
    read |= {("postdeploy.ps1", v) for v in re.findall(r"\$env:([A-Z][A-Z0-9_]+)", windows_text)}
    for script, var in read:
        shell = var in {"IFS", "PATH", "HOME", "PWD"}
        known = shell or var in outputs or var.startswith("AZURE_") or f"${{{var}" in json.dumps(params)
        assert known, f"{script} reads {var}, which no Bicep output or parameter provides"


def check_funcignore(root: Path = ROOT) -> None:
    ignore = FuncIgnore.read(root)
    for path in (
        "tests/test_infra.py",
        "local/host.py",
        "local/package.py",
        "bench/run.py",
        "infra/bicep/main.bicep",
        "docs/deploy.md",
        "BENCHMARKS.md",
        "dist/function-app.zip",  # the package itself, when make package runs again
        ".python_packages/lib/site-packages/yaml/__init__.py",  # make package installs its own
        "shared/__pycache__/app.cpython-311.pyc",  # make package compiles its own
    ):
        assert ignore.excludes(path), f".funcignore must keep {path} out of the package"
    for path in (
        ".venv/bin/python",
        ".venv-checkov/bin/checkov",
        ".venv-arm/arm-models.json",
        ".ci/run",
        "local.settings.json",
        ".funcignore",
    ):
        assert ignore.excludes(path), f".funcignore must keep {path} out of the package"
    for path in ("function_app.py", "host.json", "requirements.txt", "routing.yaml", "shared/adapters/settings.py"):
        assert not ignore.excludes(path), f".funcignore drops {path}, which the deployed app needs"
    functions_dir = root / "functions"
    for module in functions_dir.glob("*.py") if functions_dir.is_dir() else []:
        assert not ignore.excludes(f"functions/{module.name}")


def check_no_machine_paths(root: Path = ROOT) -> None:
    files = [
        *sorted((root / "infra").rglob("*")),
        root / "azure.yaml",
        root / ".funcignore",
        root / ".checkov.yaml",
    ]
    files += [root / "docs" / "deploy.md"]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_text(encoding="utf-8")
            # The handbook folder beside the repository, spelled so this file does not name it itself.
            for bad in ("/work/", "/".join(("..", "shared")) + "/"):
                assert bad not in text, f"{path.relative_to(root)} names a path of this machine: {bad}"


# --- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model() -> Model:
    return load_model()


def test_every_bicep_file_parses(model: Model) -> None:
    assert len(model.templates) >= 5
    check_parses(model)


def test_modules_exist_and_are_all_deployed(model: Model) -> None:
    check_modules_exist_and_are_used(model)


def test_templates_use_the_dialect_checkov_parses(model: Model) -> None:
    check_checkov_dialect(model)


def test_every_param_has_a_description(model: Model) -> None:
    check_param_descriptions(model)


def test_event_subscription_targets_the_event_grid_function(model: Model, function_facts: FunctionFacts) -> None:
    check_event_subscription(model, function_facts)


def test_retry_and_dead_lettering(model: Model) -> None:
    check_retry_and_dead_letter(model)


def test_system_topic_on_acs(model: Model) -> None:
    check_system_topic(model)


def test_app_settings_are_exactly_what_is_read(model: Model) -> None:
    check_app_setting_names(model)


def test_app_setting_values_are_wired(model: Model, function_facts: FunctionFacts) -> None:
    check_app_setting_values(model, function_facts)


def test_table_endpoint_with_or_without_its_trailing_slash() -> None:
    """HANDOFF_STORE is primaryEndpoints.table, which Azure gives with a trailing slash: azure-data-tables
    must address the same URL with it as without it (no '//' before the table)."""
    from azure.core.credentials import AccessToken
    from azure.core.pipeline.transport import HttpTransport
    from azure.data.tables import TableClient

    class Token:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("token", 2**31)

    class Sent(Exception):
        pass

    class Capture(HttpTransport):  # records the request and sends nothing: no packet leaves the machine
        def __init__(self) -> None:
            self.urls: list[str] = []

        def __enter__(self) -> Capture:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def send(self, request: Any, **kwargs: Any) -> Any:
            self.urls.append(request.url)
            raise Sent

    urls = []
    for endpoint in ("https://acct.table.core.windows.net/", "https://acct.table.core.windows.net"):
        transport = Capture()
        client = TableClient(endpoint=endpoint, table_name="calls", credential=Token(), transport=transport)
        with pytest.raises(Sent):
            client.get_entity("correlation", "record")
        urls.append(transport.urls[0])
    assert urls[0] == urls[1], urls
    assert urls[0].startswith("https://acct.table.core.windows.net/calls(PartitionKey="), urls[0]


def test_role_assignments(model: Model) -> None:
    check_role_assignments(model)


def test_always_ready_instance_for_incoming_call(model: Model, function_facts: FunctionFacts) -> None:
    check_always_ready(model, function_facts)


def test_storage_shared_key_off(model: Model) -> None:
    check_storage(model)


def test_app_insights_local_auth_off_and_workbook(model: Model) -> None:
    check_monitoring(model)


def test_flex_consumption_python_app(model: Model) -> None:
    check_flex_app(model)


def test_no_setting_flex_forbids(model: Model) -> None:
    check_no_forbidden_settings(model)


def test_azd_files(model: Model) -> None:
    check_azd_files(model)


def test_funcignore() -> None:
    check_funcignore()


def test_no_machine_paths() -> None:
    check_no_machine_paths()


# --- the checks catch what they guard ---------------------------------------------------------

Check = Callable[[Model, FunctionFacts], None]

#: (file, text, replacement, check that must then fail)
MUTATIONS: list[tuple[str, str, str, Check]] = [
    ("modules/event-subscription.bicep", "'StringIn'", "'StringBeginsWith'", check_event_subscription),
    (
        "modules/event-subscription.bicep",
        "data.to.PhoneNumber",
        "data.from.PhoneNumber",
        check_event_subscription,
    ),
    (
        "modules/event-subscription.bicep",
        "'Microsoft.Communication.IncomingCall'",
        "'Microsoft.Communication.IncomingCall'\n        'Microsoft.Communication.CallEnded'",
        check_event_subscription,
    ),
    ("modules/event-subscription.bicep", "'AzureFunction'", "'WebHook'", check_event_subscription),
    (
        "main.bicep",
        "var incomingCallFunctionName = 'incoming_call'",
        "var incomingCallFunctionName = 'incomingcall'",
        check_event_subscription,
    ),
    ("main.bicep", "= if (deployEventSubscription) {", "= {", check_event_subscription),
    (
        "modules/event-subscription.bicep",
        "maxDeliveryAttempts: 2",
        "maxDeliveryAttempts: 30",
        lambda m, f: check_retry_and_dead_letter(m),
    ),
    (
        "modules/event-subscription.bicep",
        "eventTimeToLiveInMinutes: 1",
        "eventTimeToLiveInMinutes: 1440",
        lambda m, f: check_retry_and_dead_letter(m),
    ),
    (
        "modules/event-subscription.bicep",
        "deadLetterWithResourceIdentity",
        "deadLetterDestination",
        lambda m, f: check_retry_and_dead_letter(m),
    ),
    (
        "modules/event-topic.bicep",
        "location: 'global'",
        "location: 'westeurope'",
        lambda m, f: check_system_topic(m),
    ),
    (
        "modules/function-app.bicep",
        "  HANDOFF_DEADLINE_SECONDS: deadlineSeconds\n",
        "",
        lambda m, f: check_app_setting_names(m),
    ),
    (
        "modules/function-app.bicep",
        "  HANDOFF_CONFIG: 'routing.yaml'\n",
        "  HANDOFF_CONFIG: 'routing.yaml'\n  HANDOFF_OPENID_CONFIG_URL: 'https://example.invalid/'\n",
        lambda m, f: check_app_setting_names(m),
    ),
    (
        "modules/function-app.bicep",
        "  AzureWebJobsStorage__clientId: identityClientId\n",
        "",
        lambda m, f: check_app_setting_names(m),
    ),
    ("modules/function-app.bicep", "/api/callbacks'", "/api/callback'", check_app_setting_values),
    (
        "modules/function-app.bicep",
        "ACS_RESOURCE_ID: acsImmutableResourceId",
        "ACS_RESOURCE_ID: acsEndpoint",
        check_app_setting_values,
    ),
    (
        "main.bicep",
        "param deadlineSeconds string = '10'",
        "param deadlineSeconds string = '30'",
        check_app_setting_values,
    ),
    (
        "modules/rbac.bicep",
        "'ba92f5b4-2d11-453d-a403-e96b0029c9fe'",
        "'b24988ac-6180-42a0-ab88-20f7382dd24c'",
        lambda m, f: check_role_assignments(m),
    ),
    (
        "modules/rbac.bicep",
        "scope: deadLetterContainer",
        "scope: storage",
        lambda m, f: check_role_assignments(m),
    ),
    ("modules/acs-rbac.bicep", "// Why:", "//", lambda m, f: check_role_assignments(m)),
    (
        "modules/function-app.bicep",
        "HANDOFF_STORE: storage.properties.primaryEndpoints.table",
        "HANDOFF_STORE: storage.properties.primaryEndpoints.blob",
        check_app_setting_values,
    ),
    (
        "main.bicep",
        "param contextTtlHours string = '24'",
        "param contextTtlHours string = '48'",
        check_app_setting_values,
    ),
    (
        "modules/function-app.bicep",
        "  HANDOFF_TRANSFER_TIMEOUT_SECONDS: transferTimeoutSeconds\n",
        "",
        lambda m, f: check_app_setting_names(m),
    ),
    (
        "modules/rbac.bicep",
        "'0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
        "'76199698-9eea-4c19-bc75-cec21354c6b6'",  # Storage Table Data Reader: the app writes records
        lambda m, f: check_role_assignments(m),
    ),
    ("modules/rbac.bicep", "scope: callsTable", "scope: storage", lambda m, f: check_role_assignments(m)),
    (
        "modules/rbac.bicep",
        "storageTableDataContributorRoleId)\n    principalId: functionPrincipalId",
        "storageTableDataContributorRoleId)\n    principalId: systemTopicPrincipalId",
        lambda m, f: check_role_assignments(m),
    ),
    (
        "modules/rbac.bicep",
        "  parent: tableService\n  name: callsTableName\n",
        "  parent: tableService\n  name: 'calls'\n",
        lambda m, f: check_role_assignments(m),
    ),
    (
        "modules/storage.bicep",
        "  parent: tableService\n  name: callsTableName\n",
        "  parent: tableService\n  name: 'records'\n",
        lambda m, f: check_role_assignments(m),
    ),
    (
        "main.bicep",
        "    callsTableName: storage.outputs.callsTableName\n    applicationInsightsName",
        "    callsTableName: callsTableName\n    applicationInsightsName",
        lambda m, f: check_role_assignments(m),
    ),
    (
        "main.parameters.json",
        "${HANDOFF_CONTEXT_TTL_HOURS=24}",
        "${HANDOFF_CONTEXT_TTL_HOURS=48}",
        lambda m, f: check_azd_files(m),
    ),
    (
        "main.parameters.json",
        "${HANDOFF_DEADLINE_SECONDS=10}",
        "${HANDOFF_DEADLINE_SECONDS=12}",
        lambda m, f: check_azd_files(m),
    ),
    (
        "modules/function-app.bicep",
        "        // A call rings for 30 seconds",
        "        // one\n        // two\n        // A call rings for 30 seconds",
        lambda m, f: check_checkov_dialect(m),
    ),
    (
        "modules/function-app.bicep",
        "name: 'function:${alwaysReadyFunctionName}'",
        "name: alwaysReadyFunctionName",
        check_always_ready,
    ),
    (
        "main.bicep",
        "param alwaysReadyInstanceCount int = 1",
        "param alwaysReadyInstanceCount int = 0",
        check_always_ready,
    ),
    (
        "modules/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
        lambda m, f: check_storage(m),
    ),
    (
        "modules/monitoring.bicep",
        "DisableLocalAuth: true",
        "DisableLocalAuth: false",
        lambda m, f: check_monitoring(m),
    ),
    (
        "modules/function-app.bicep",
        "    name: 'python'\n",
        "    name: 'node'\n",
        lambda m, f: check_flex_app(m),
    ),
    (
        "modules/function-app.bicep",
        "  AzureWebJobsStorage__credential: 'managedidentity'\n",
        "  AzureWebJobsStorage__credential: 'managedidentity'\n  FUNCTIONS_WORKER_RUNTIME: 'python'\n",
        lambda m, f: check_no_forbidden_settings(m),
    ),
    (
        "modules/identity.bicep",
        "@description('Name of the user-assigned managed identity.')\n",
        "",
        lambda m, f: check_param_descriptions(m),
    ),
    (
        "modules/identity.bicep",
        "param tags object",
        "param tags object\n@description('A list.')\nparam xs string[]",
        lambda m, f: check_checkov_dialect(m),
    ),
    (
        "modules/acs.bicep",
        "output name string = name",
        "output name string = name\nvar broken = {",
        lambda m, f: check_parses(m),
    ),
]


@pytest.mark.parametrize(
    ("file", "text", "replacement", "check"),
    MUTATIONS,
    ids=[f"{m[0]}:{m[1][:40].strip()}" for m in MUTATIONS],
)
def test_check_catches_mutation(
    tmp_path: Path, function_facts: FunctionFacts, file: str, text: str, replacement: str, check: Check
) -> None:
    copy = tmp_path / "bicep"
    shutil.copytree(BICEP_DIR, copy)
    target = copy / file
    source = target.read_text(encoding="utf-8")
    assert source.count(text) == 1, f"mutation target not found once in {file}: {text!r}"
    target.write_text(source.replace(text, replacement), encoding="utf-8")
    # The unmutated templates pass every check (the tests above); the mutated one must not.
    with pytest.raises(AssertionError):
        check(load_model(copy), function_facts)


#: (file at the repository root, text, replacement): each must make check_azd_files or check_funcignore fail.
ROOT_MUTATIONS: list[tuple[str, str, str]] = [
    ("azure.yaml", "remoteBuild: false", "remoteBuild: true"),
    ("azure.yaml", "- azd: deploy handoff --from-package dist/function-app.zip", "- azd: deploy --all"),
    ("azure.yaml", "    run: make package\n", "    run: echo skipped\n"),
    ("azure.yaml", ">&2; exit 1", ">&2"),
    ("Makefile", "$(PY) -m local.package", "zip -r dist/function-app.zip ."),
    (".funcignore", "\ndist/\n", "\n"),
    (".funcignore", "\n__pycache__/\n", "\n"),
    (".funcignore", "\nBENCHMARKS.md\n", "\n"),
    (".funcignore", "\n.funcignore\n", "\n"),
]


@pytest.mark.parametrize(
    ("file", "text", "replacement"), ROOT_MUTATIONS, ids=[f"{m[0]}:{m[1][:40].strip()}" for m in ROOT_MUTATIONS]
)
def test_azd_and_funcignore_checks_catch_mutation(
    tmp_path: Path, model: Model, file: str, text: str, replacement: str
) -> None:
    for name in ("azure.yaml", "Makefile", ".funcignore"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "infra" / "hooks", tmp_path / "infra" / "hooks")
    target = tmp_path / file
    source = target.read_text(encoding="utf-8")
    assert source.count(text) == 1, f"mutation target not found once in {file}: {text!r}"
    check_azd_files(model, tmp_path)
    check_funcignore(tmp_path)
    target.write_text(source.replace(text, replacement), encoding="utf-8")
    with pytest.raises(AssertionError):
        check_azd_files(model, tmp_path)
        check_funcignore(tmp_path)
