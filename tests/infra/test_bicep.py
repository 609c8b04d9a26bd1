"""Static checks of the Bicep in infra/ against the connector and against the deployment we promise.

The Bicep CLI is not installable on the project's machines (it ships only on NuGet), so the files are parsed
with pycep-parser (structure) and tree-sitter-bicep (syntax), and the assertions run over pycep's output.
Names and defaults are compared with `connector.settings`, the single source of the connector's queues,
tables, containers and settings. Where `bicep` or `az` is on PATH, `bicep build` and `bicep lint` run too.
"""
from __future__ import annotations

import functools
import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_bicep
import yaml
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

settings = importlib.import_module("connector.settings")

ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}
STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
APP_INSIGHTS = "Microsoft.Insights/components"
KEY_VAULT = "Microsoft.KeyVault/vaults"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
DIAGNOSTIC_SETTINGS = "Microsoft.Insights/diagnosticSettings"
CONTAINER = f"{STORAGE_ACCOUNT}/blobServices/containers"
# Extension resources: named by the resource they extend, carry no tags.
EXTENSION_TYPES = {ROLE_ASSIGNMENT, DIAGNOSTIC_SETTINGS}

# Resource types that accept no tags (child resources and role assignments); every other resource is tagged.
UNTAGGED_TYPES = {
    *EXTENSION_TYPES,
    f"{STORAGE_ACCOUNT}/blobServices",
    f"{STORAGE_ACCOUNT}/queueServices",
    f"{STORAGE_ACCOUNT}/tableServices",
    f"{STORAGE_ACCOUNT}/blobServices/containers",
    f"{STORAGE_ACCOUNT}/queueServices/queues",
    f"{STORAGE_ACCOUNT}/tableServices/tables",
    "Microsoft.Web/sites/config",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
}

# App settings Flex Consumption rejects or ignores: the runtime and the package live in functionAppConfig.
FLEX_DEPRECATED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}

# In Azure the host and the connector reach storage with the managed identity (AzureWebJobsStorage__*);
# the connection-string setting that serves Azurite locally must not be deployed.
REPLACED_BY_IDENTITY = {"AzureWebJobsStorage"}

KEY_VAULT_REFERENCE = "<Key Vault reference>"  # stands for keyVault.outputs.references in main_app_settings()

# Blob containers of the Functions host itself: singleton locks and timer schedules, function keys
# (Learn: "Connecting to host storage with an identity").
HOST_CONTAINERS = ["azure-webjobs-hosts", "azure-webjobs-secrets"]


# ---------------------------------------------------------------------------------------------------------
# Reading pycep's output. Identifiers and string literals both come out as str; property access, function
# calls and operators as nested dicts; loops and conditions wrap a resource's body in another "config".

@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """pycep's output, with each `loadJsonContent(file)` variable replaced by the file's content."""
    template = BicepParser().parse(file_path=path)
    for variable in template.get("variables", {}).values():
        load = function_of(variable["value"], "load_json_content")
        if load is not None:
            variable["loaded_from"] = load["file_path"]
            variable["value"] = json.loads((path.parent / load["file_path"]).read_text())
    return template


def module(name: str) -> dict[str, Any]:
    return parse(MODULES / f"{name}.bicep")


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource's own properties, without the loop or condition around them."""
    config = resource["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def loop_of(resource: dict[str, Any]) -> dict[str, Any] | None:
    return resource["config"].get("loop_type")


def condition_of(resource: dict[str, Any]) -> Any:
    return resource["config"].get("condition")


def unquote(key: str) -> str:
    return key[1:-1] if len(key) > 1 and key[0] == key[-1] == "'" else key


def path_of(value: Any) -> tuple[str, ...] | None:
    """`a.b.c` as ('a', 'b', 'c'); a plain identifier as a 1-tuple; anything else None."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        head, tail = path_of(operands["operand_1"]), path_of(operands["operand_2"])
        if head and tail:
            return head + tail
    return None


def function_of(value: Any, name: str) -> dict[str, Any] | None:
    """The parameters of a call to `name` (pycep's snake_case name), or None."""
    if isinstance(value, dict) and value.get("function", {}).get("type") == name:
        return value["function"]["parameters"]
    return None


def resolve(template: dict[str, Any], value: Any) -> Any:
    """Follow variables and property access into variables; leave parameters and literals as they are."""
    path = path_of(value)
    if path and path[0] in template["variables"]:
        resolved = resolve(template, template["variables"][path[0]]["value"])
        for key in path[1:]:
            resolved = {unquote(k): v for k, v in resolved.items()}[key]
            resolved = resolve(template, resolved)
        return resolved
    if isinstance(value, list):
        return [resolve(template, item) for item in value]
    return value


def merged_object(template: dict[str, Any], value: Any,
                  outputs: dict[tuple[str, ...], dict[str, Any]] | None = None) -> dict[str, Any]:
    """An object expression with variables followed, `union(...)` merged and parameters at their defaults;
    `outputs` stands in for module outputs (`keyVault.outputs.references`)."""
    outputs = outputs or {}
    value = resolve(template, value)
    if path_of(value) in outputs:
        return outputs[path_of(value)]
    union = function_of(value, "union")
    if union is not None:
        merged: dict[str, Any] = {}
        for argument in union.values():
            merged.update(merged_object(template, argument, outputs))
        return merged
    non_empty = non_empty_entries(value)
    if non_empty is not None:
        return {key: item for key, item in merged_object(template, non_empty, outputs).items()
                if at_default(template, item) not in ("", None)}
    if isinstance(value, dict) and value.get("function", {}).get("type") == "toObject":
        arguments = value["function"]["parameters"]
        keys = resolve(template, arguments["arg_1"])
        assert arguments["arg_2"]["detail"]["expression"] == arguments["arg_2"]["detail"]["var_1"]
        return {key: arguments["arg_3"]["detail"]["expression"] for key in keys}
    if isinstance(value, str) and value in template["parameters"]:
        return merged_object(template, template["parameters"][value]["default"], outputs)
    assert isinstance(value, dict) and not {"operator", "function"} & set(value), (
        f"not an object expression: {value!r}")
    return {unquote(key): item for key, item in value.items()}


def non_empty_entries(value: Any) -> Any:
    """X for `toObject(filter(items(X), e => !empty(e.value)), e => e.key, e => e.value)`, else None."""
    if not (isinstance(value, dict) and value.get("function", {}).get("type") == "toObject"):
        return None
    arguments = value["function"]["parameters"]
    keep = function_of(arguments["arg_1"], "filter")
    if keep is None:
        return None
    (source,) = function_of(keep["input_array"], "items").values()
    entry = keep["expression"]["detail"]["var_1"]
    assert keep["expression"]["detail"]["expression"] == {"operator": {"type": "not", "operands": {
        "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": {"operator": {
            "type": "property_accessor", "operands": {"operand_1": entry, "operand_2": "value"}}}}}}}}}
    assert [arguments[a]["detail"]["expression"] for a in ("arg_2", "arg_3")] == [
        {"operator": {"type": "property_accessor", "operands": {"operand_1": entry, "operand_2": key}}}
        for key in ("key", "value")]
    return source


def at_default(template: dict[str, Any], value: Any) -> Any:
    """A parameter's default, or the value itself."""
    if isinstance(value, str) and value in template["parameters"]:
        return template["parameters"][value]["default"]
    return value


def decorators(parameter: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in parameter["decorators"]}


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["resources"].items()
        if resource["type"] == resource_type and not resource["existing"]
    }


def only_resource(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (resource,) = resources_of_type(template, resource_type).values()
    return body(resource)


def module_call(name: str) -> dict[str, Any]:
    """main.bicep's call of modules/<name>.bicep."""
    (call,) = [
        m["config"] for m in parse(MAIN)["modules"].values() if m["detail"]["path"] == f"modules/{name}.bicep"
    ]
    return call


def main_secret_settings() -> list[str]:
    """The secret settings main.bicep stores in Key Vault, parameters at their defaults."""
    main = parse(MAIN)
    names = module_call("keyvault")["params"]["secretSettingNames"]
    mapped = function_of(names, "map")
    assert mapped["arg_2"]["detail"]["expression"] == {"operator": {"type": "property_accessor", "operands": {
        "operand_1": mapped["arg_2"]["detail"]["var_1"], "operand_2": "key"}}}
    (source,) = function_of(mapped["arg_1"], "items").values()
    assert source == module_call("keyvault")["params"]["secrets"]
    return list(merged_object(main, source))


def main_app_settings() -> dict[str, Any]:
    """The connector settings main.bicep hands to the function app, parameters at their defaults."""
    references = {name: KEY_VAULT_REFERENCE for name in main_secret_settings()}
    return merged_object(parse(MAIN), module_call("function-app")["params"]["connectorAppSettings"],
                         {("keyVault", "outputs", "references"): references})


# ---------------------------------------------------------------------------------------------------------
# Syntax and wiring

@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    template = parse(path)
    assert template["resources"] or template["modules"], f"{path.name} declares nothing"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_is_valid_syntax_for_tree_sitter(path: Path) -> None:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    tree = parser.parse(path.read_bytes())
    assert not tree.root_node.has_error, f"{path.name}: syntax error near {_first_error(tree.root_node)}"


def _first_error(node: tree_sitter.Node) -> str:
    if node.type == "ERROR" or node.is_missing:
        return f"line {node.start_point[0] + 1}"
    for child in node.children:
        if child.has_error:
            return _first_error(child)
    return "an unknown place"


def test_main_composes_every_module_and_modules_exist() -> None:
    used = {call["detail"]["path"] for call in parse(MAIN)["modules"].values()}
    present = {f"modules/{p.name}" for p in MODULES.glob("*.bicep")}
    assert used == present
    assert present == {f"modules/{n}.bicep" for n in
                       ("identity", "storage", "keyvault", "monitoring", "function-app", "rbac", "alerts",
                        "workbook")}


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_parameter_and_output_is_typed_and_described(path: Path) -> None:
    template = parse(path)
    for name, parameter in template["parameters"].items():
        assert parameter["type"], f"{path.name}: param {name} has no type"
        assert decorators(parameter).get("description"), f"{path.name}: param {name} has no @description"
    for name, output in template.get("outputs", {}).items():
        assert decorators(output).get("description"), f"{path.name}: output {name} has no @description"


@pytest.mark.parametrize("name", sorted(p.stem for p in MODULES.glob("*.bicep")))
def test_module_calls_pass_every_required_parameter_and_nothing_else(name: str) -> None:
    declared = module(name)["parameters"]
    passed = set(module_call(name)["params"])
    required = {p for p, spec in declared.items() if spec["default"] is None}
    assert passed <= set(declared), f"{name}: unknown params {passed - set(declared)}"
    assert required <= passed, f"{name}: missing params {required - passed}"


# ---------------------------------------------------------------------------------------------------------
# Names, tags, secrets

def test_resource_names_derive_from_environment_name_and_a_unique_suffix() -> None:
    main = parse(MAIN)
    token = function_of(main["variables"]["resourceToken"]["value"], "unique_string")
    assert "environmentName" in token.values()
    names = main["variables"]["names"]["value"]
    assert names["resourceGroup"] == "rg-${environmentName}"
    for key, name in names.items():
        if key != "resourceGroup":
            assert "${resourceToken}" in name, f"name {key} lacks the unique suffix"
    used = json.dumps(main["resources"]) + json.dumps(main["modules"])
    for key in names:
        assert f'"operand_1": "names", "operand_2": "{key}"' in used, f"names.{key} is never used"


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.bicep")), ids=lambda p: p.name)
def test_modules_name_their_resources_from_parameters(path: Path) -> None:
    template = parse(path)
    for symbol, resource in template["resources"].items():
        top_level = resource["type"].count("/") == 1 and resource["type"] not in EXTENSION_TYPES
        if top_level and not resource["existing"]:
            name = body(resource)["name"]
            if isinstance(name, str) and name.startswith("${"):  # a loop: '${prefix}-${item.name}'
                name = name[2:name.index("}")]
            elif function_of(name, "guid"):  # workbooks: a GUID from the id and display name
                name = function_of(name, "guid")["extra_string_1"]
            assert name in template["parameters"], f"{path.name}: {symbol} has a fixed name"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_taggable_resource_is_tagged(path: Path) -> None:
    template = parse(path)
    for symbol, resource in template["resources"].items():
        if resource["existing"] or resource["type"] in UNTAGGED_TYPES:
            continue
        tags = body(resource).get("tags")
        assert tags, f"{path.name}: {symbol} ({resource['type']}) has no tags"
        assert tags == "tags" or "tags" in function_of(tags, "union").values(), f"{path.name}: {symbol}"


def test_azd_tags_mark_the_environment_and_the_api_service() -> None:
    main = parse(MAIN)
    assert merged_object(main, "tags") == {"azd-env-name": "environmentName"}
    for name, call in main["modules"].items():
        if "tags" in parse(INFRA / call["detail"]["path"])["parameters"]:
            assert call["config"]["params"]["tags"] == "tags", f"module {name} gets other tags"
    site_tags = function_of(only_resource(module("function-app"), "Microsoft.Web/sites")["tags"], "union")
    assert site_tags == {"arg_1": "tags", "arg_2": {"'azd-service-name'": "api"}}


def test_secrets_enter_only_through_secure_parameters() -> None:
    main, vault = parse(MAIN), module("keyvault")
    for path in BICEP_FILES:
        for name, parameter in parse(path)["parameters"].items():
            if "secure" in decorators(parameter):
                assert parameter["default"] in (None, "", {}), f"{path.name}: {name} has a literal default"
    # Everything an operator may put a secret into is secure, here and in the modules it is passed to.
    for name in ("bcClientSecret", "tokenEncryptionKey", "connectorSecrets", "connectorSettings"):
        assert "secure" in decorators(main["parameters"][name]), f"{name} would land in deployment history"
    assert "secure" in decorators(vault["parameters"]["secrets"])
    assert "secure" in decorators(module("function-app")["parameters"]["connectorAppSettings"])
    values = merged_object(main, "secretValues")
    # Every declared secret is a vault entry (empty = keep what the vault holds); two take their value
    # from a secure parameter, the rest only from the vault or the secure connectorSecrets.
    declared = main["variables"]["connector"]["value"]["secretSettings"]
    assert values == dict.fromkeys(declared, "") | {"BC_CLIENT_SECRET": "bcClientSecret",
                                                     "TOKEN_ENCRYPTION_KEY": "tokenEncryptionKey"}
    assert function_of(resolve(main, "secretValues"), "union")["arg_3"] == "connectorSecrets"


def test_a_secret_is_written_only_when_given_so_the_vault_keeps_what_an_operator_set() -> None:
    vault = module("keyvault")
    (entries,) = resources_of_type(vault, f"{KEY_VAULT}/secrets").values()
    loop = loop_of(entries)["detail"]
    kept = function_of(loop["array_name"], "filter")
    assert kept["input_array"] == "secretSettingNames"
    setting = kept["expression"]["detail"]["var_1"]
    secret_value = {"operator": {"type": "index_accessor",
                                 "operands": {"operand_1": "secrets", "operand_2": setting}}}
    assert kept["expression"]["detail"]["expression"] == {"operator": {"type": "not", "operands": {
        "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": secret_value}}}}}}
    item = loop["item_name"]
    assert body(entries)["properties"]["value"] == {
        "operator": {"type": "index_accessor", "operands": {"operand_1": "secrets", "operand_2": item}}}
    assert body(entries)["name"] == {
        "operator": {"type": "index_accessor", "operands": {"operand_1": "secretNames", "operand_2": item}}}


def test_key_vault_secret_names_are_the_setting_names_in_lower_case_with_hyphens() -> None:
    vault = module("keyvault")
    names = function_of(vault["variables"]["secretNames"]["value"], "toObject")
    setting = names["arg_3"]["detail"]["var_1"]
    assert names["arg_1"] == "secretSettingNames"
    assert names["arg_3"]["detail"]["expression"] == {"function": {"type": "to_lower", "parameters": {
        "string_to_change": {"function": {"type": "replace", "parameters": {
            "original_string": setting, "old_string": "_", "new_string": "-"}}}}}}
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    for name in ("bc-client-secret", "token-encryption-key", "emea--bc-client-secret"):
        assert f"--name {name} " in deploy_doc or f"`{name}`" in deploy_doc, name


def test_no_keys_connection_strings_or_access_policies_anywhere_in_infra() -> None:
    text = "\n".join(p.read_text() for p in sorted(INFRA.rglob("*")) if p.is_file())
    for forbidden in ("listKeys", "AccountKey=", "InstrumentationKey=", "SharedAccessSignature",
                      "accessPolicies"):
        assert forbidden not in text


# ---------------------------------------------------------------------------------------------------------
# Storage

def test_storage_account_is_identity_only_and_https_only() -> None:
    account = only_resource(module("storage"), STORAGE_ACCOUNT)
    assert account["kind"] == "StorageV2"
    assert account["properties"] | {
        "allowSharedKeyAccess": False,
        "allowBlobPublicAccess": False,
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True,
        "defaultToOAuthAuthentication": True,
    } == account["properties"]


def test_storage_names_come_from_the_generated_json_of_the_connector_settings() -> None:
    main = parse(MAIN)
    assert main["variables"]["connector"]["loaded_from"] == "connector.json"
    names = {param: resolve(main, value) for param, value in module_call("storage")["params"].items()}
    assert names["queueNames"] == list(settings.QUEUE_NAMES)
    assert names["tableNames"] == list(settings.TABLE_NAMES)
    assert names["blobContainerNames"] == list(settings.BLOB_CONTAINERS)
    assert "sales-orders-poison" in settings.QUEUE_NAMES
    assert resolve(main, "deploymentContainerName") not in settings.BLOB_CONTAINERS
    for name in [*settings.QUEUE_NAMES, *settings.TABLE_NAMES, *settings.BLOB_CONTAINERS]:
        assert f"'{name}'" not in MAIN.read_text(), f"main.bicep repeats the name {name}"


@pytest.mark.parametrize(
    ("service", "child", "names_param"),
    [
        ("queueServices", "queues", "queueNames"),
        ("tableServices", "tables", "tableNames"),
        ("blobServices", "containers", "blobContainerNames"),
        ("blobServices", "containers", "hostContainerNames"),
    ],
)
def test_storage_creates_one_child_per_listed_name(service: str, child: str, names_param: str) -> None:
    storage = module("storage")
    services = resources_of_type(storage, f"{STORAGE_ACCOUNT}/{service}")
    (service_symbol,) = services
    assert body(services[service_symbol])["parent"] in resources_of_type(storage, STORAGE_ACCOUNT)
    (children,) = [
        r for r in resources_of_type(storage, f"{STORAGE_ACCOUNT}/{service}/{child}").values()
        if loop_of(r) and loop_of(r)["detail"]["array_name"] == names_param
    ]
    assert body(children)["parent"] == service_symbol
    assert body(children)["name"] == loop_of(children)["detail"]["item_name"]
    assert path_of(module_call("storage")["params"][names_param])[0] in ("connector", "hostContainerNames")


def test_the_functions_host_containers_are_created_beside_the_connector_ones() -> None:
    main = parse(MAIN)
    assert resolve(main, module_call("storage")["params"]["hostContainerNames"]) == HOST_CONTAINERS
    assert not set(HOST_CONTAINERS) & set(settings.BLOB_CONTAINERS)


def test_deployment_container_is_created_and_handed_to_the_site() -> None:
    storage = module("storage")
    containers = resources_of_type(storage, f"{STORAGE_ACCOUNT}/blobServices/containers").values()
    assert "deploymentContainerName" in [body(c)["name"] for c in containers if not loop_of(c)]
    for name in ("storage", "function-app"):
        assert module_call(name)["params"]["deploymentContainerName"] == "deploymentContainerName"


# ---------------------------------------------------------------------------------------------------------
# Function app

def test_plan_is_flex_consumption_on_linux() -> None:
    plan = only_resource(module("function-app"), "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True


def test_site_is_a_python_311_flex_app_deployed_from_blob_with_the_identity() -> None:
    site = only_resource(module("function-app"), "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"] == "${blobEndpoint}${deploymentContainerName}"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    assert "linuxFxVersion" not in site["properties"]["siteConfig"]


def test_scale_out_is_capped_by_a_parameter_at_the_lowest_value_flex_accepts() -> None:
    main, app = parse(MAIN), module("function-app")
    site = only_resource(app, "Microsoft.Web/sites")
    scale = site["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    assert module_call("function-app")["params"]["maximumInstanceCount"] == "maximumInstanceCount"
    parameter = main["parameters"]["maximumInstanceCount"]
    assert parameter["default"] == 40
    assert decorators(parameter)["min_value"] == 40
    assert "5 requests" in decorators(parameter)["description"]


def test_site_accepts_only_https_tls12_and_no_basic_auth_publishing() -> None:
    app = module("function-app")
    site = only_resource(app, "Microsoft.Web/sites")
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    assert site["properties"]["siteConfig"]["ftpsState"] == "Disabled"
    policies = resources_of_type(app, "Microsoft.Web/sites/basicPublishingCredentialsPolicies").values()
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies} == {"ftp": False, "scm": False}


def test_host_storage_and_telemetry_sign_in_with_the_managed_identity() -> None:
    app = module("function-app")
    host = merged_object(app, "hostAppSettings")
    assert host["AzureWebJobsStorage__accountName"] == "storageAccountName"
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert host["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert host[f"AzureWebJobsStorage__{service}ServiceUri"] == f"{service}Endpoint"
        assert path_of(module_call("function-app")["params"][f"{service}Endpoint"]) == (
            "storage", "outputs", f"{service}Endpoint")
    assert path_of(host["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == (
        "applicationInsights", "properties", "ConnectionString")
    assert host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identityClientId};Authorization=AAD")
    components = only_resource(module("monitoring"), APP_INSIGHTS)
    assert components["properties"]["DisableLocalAuth"] is True

    site = only_resource(app, "Microsoft.Web/sites")
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    calls = module_call("function-app")["params"]
    assert path_of(calls["identityId"]) == ("identity", "outputs", "id")
    assert path_of(calls["identityClientId"]) == ("identity", "outputs", "clientId")


def test_site_app_settings_are_the_connector_settings_then_the_host_settings() -> None:
    app = module("function-app")
    (config,) = resources_of_type(app, "Microsoft.Web/sites/config").values()
    assert body(config)["name"] == "appsettings"
    assert function_of(body(config)["properties"], "union") == {
        "arg_1": "connectorAppSettings", "arg_2": "hostAppSettings"}
    assert module_call("function-app")["params"]["connectorAppSettings"] == "connectorAppSettings"


def test_only_the_settings_the_host_resolves_are_deployed_at_their_defaults() -> None:
    """The code has every default; Bicep adds only `%NAME%` settings, the required BC ones and secrets."""
    main = parse(MAIN)
    app_settings = main_app_settings()
    required = {s.name for s in settings.SETTINGS if s.default is None and not s.secret}
    for setting in settings.SETTINGS:
        value = at_default(main, app_settings.get(setting.name))
        if setting.host_binding:
            assert value == setting.default, f"{setting.name}: deployed {value!r} != {setting.default!r}"
        elif setting.name in required:
            assert main["parameters"][app_settings[setting.name]]["default"] is None, setting.name
        elif not setting.secret:
            assert setting.name not in app_settings, f"{setting.name} repeats the code's default in Bicep"
    assert required == {"BC_TENANT", "BC_CLIENT_ID"}


def test_optional_bc_parameters_are_deployed_only_when_set() -> None:
    main = parse(MAIN)
    given = merged_object(main, "optionalBcSettings")
    assert set(given) == {"BC_ENVIRONMENT", "BC_GRANT_TYPE", "BC_COMPANY", "BC_CLIENT_CREDENTIAL",
                          "BC_CLIENT_SECRET_EXPIRES"}
    for name, parameter in given.items():
        spec = main["parameters"][parameter]
        assert spec["default"] == "", f"{parameter} repeats a default the code has"
        assert decorators(spec)["description"].startswith(f"{name}:")
    assert decorators(
        main["parameters"]["bcGrantType"])["allowed"] == [""] + ["authorization_code", "client_credentials"]


def test_secret_settings_are_key_vault_references_that_win_over_connector_settings() -> None:
    app_settings = main_app_settings()
    for setting in (s for s in settings.SETTINGS if s.secret):
        assert app_settings.get(setting.name) == KEY_VAULT_REFERENCE, setting.name
    passed = module_call("function-app")["params"]["connectorAppSettings"]
    union = function_of(resolve(parse(MAIN), passed), "union")
    assert path_of(list(union.values())[-1]) == ("keyVault", "outputs", "references")
    assert list(union.values())[1] == "connectorSettings"
    assert parse(MAIN)["variables"]["connector"]["value"]["secretSettings"] == [
        s.name for s in settings.SETTINGS if s.secret]

    vault = module("keyvault")
    references = function_of(vault["outputs"]["references"]["value"], "toObject")
    assert references["arg_1"] == "secretSettingNames"
    setting = references["arg_3"]["detail"]["var_1"]
    assert references["arg_3"]["detail"]["expression"] == (
        f"@Microsoft.KeyVault(SecretUri=${{vault.properties.vaultUri}}secrets/${{secretNames[{setting}]}})")


def test_no_app_setting_is_deprecated_on_flex_or_a_storage_connection_string() -> None:
    names = set(main_app_settings()) | set(merged_object(module("function-app"), "hostAppSettings"))
    assert not names & FLEX_DEPRECATED_SETTINGS
    assert not names & REPLACED_BY_IDENTITY


def test_the_function_app_waits_for_its_role_assignments() -> None:
    assert module_call("function-app")["dependsOn"] == ["rbac"]


# ---------------------------------------------------------------------------------------------------------
# Key Vault and RBAC

def test_key_vault_uses_rbac_soft_delete_and_a_purge_protection_parameter() -> None:
    vault = only_resource(module("keyvault"), KEY_VAULT)["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    conditional = vault["enablePurgeProtection"]["operator"]
    assert conditional["type"] == "conditional"
    assert conditional["operands"]["condition"] == "enablePurgeProtection"
    assert module_call("keyvault")["params"]["enablePurgeProtection"] == "enableKeyVaultPurgeProtection"
    assert parse(MAIN)["parameters"]["enableKeyVaultPurgeProtection"]["default"] is True


def _scope_symbol(rbac: dict[str, Any], resource: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The existing resource a role assignment is scoped to, and for `containers[i]` the container names."""
    scope = body(resource)["scope"]
    if isinstance(scope, str):
        return scope, None
    operands = scope["operator"]["operands"]
    loop = loop_of(resource)["detail"]
    assert scope["operator"]["type"] == "index_accessor" and operands["operand_2"] == loop["index_name"]
    scoped = rbac["resources"][operands["operand_1"]]
    assert loop_of(scoped)["detail"]["array_name"] == loop["array_name"], "scope and loop over other names"
    return operands["operand_1"], [loop["array_name"]]


def _role_assignments() -> list[tuple[str, str, str]]:
    """(principal parameter, scope, role id) for every role assignment in rbac.bicep; the scope is a resource
    type, or `<container type>:<names parameter>` for a loop over containers."""
    rbac = module("rbac")
    found = []
    for symbol, resource in resources_of_type(rbac, ROLE_ASSIGNMENT).items():
        config = body(resource)
        scope_symbol, containers = _scope_symbol(rbac, resource)
        scope = rbac["resources"][scope_symbol]
        assert scope["existing"], f"{symbol} is scoped to {scope_symbol}, not an existing resource"
        properties = config["properties"]
        definition = function_of(properties["roleDefinitionId"], "subscription_resource_id")
        assert definition["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        loop = loop_of(resource)
        if loop and definition["resource_name_1"] == loop["detail"]["item_name"]:
            role_ids = resolve(rbac, loop["detail"]["array_name"])
        else:
            role_ids = [resolve(rbac, definition["resource_name_1"])]
        name = function_of(config["name"], "guid")
        assert json.dumps(name["base_string"]).count(scope_symbol) == 1, f"{symbol}: not unique per scope"
        if containers:
            assert path_of(name["base_string"]["operator"]["operands"]["operand_2"]) == ("id",), symbol
        assert properties["principalId"] in name.values(), f"{symbol}: name not unique per principal"
        where = f"{scope['type']}:{containers[0]}" if containers else scope["type"]
        found += [(properties["principalId"], where, role_id) for role_id in role_ids]
    return found


def test_app_identity_gets_each_role_on_the_resource_it_is_for_and_blobs_only_in_its_containers() -> None:
    app_roles = {(scope, role) for who, scope, role in _role_assignments() if who == "appPrincipalId"}
    assert app_roles == {
        (STORAGE_ACCOUNT, ROLE_IDS["Storage Queue Data Contributor"]),
        (STORAGE_ACCOUNT, ROLE_IDS["Storage Table Data Contributor"]),
        (f"{CONTAINER}:appContainerNames", ROLE_IDS["Storage Blob Data Contributor"]),
        (f"{CONTAINER}:appReadContainerNames", ROLE_IDS["Storage Blob Data Reader"]),
        (f"{CONTAINER}:hostContainerNames", ROLE_IDS["Storage Blob Data Owner"]),
        (APP_INSIGHTS, ROLE_IDS["Monitoring Metrics Publisher"]),
        (KEY_VAULT, ROLE_IDS["Key Vault Secrets User"]),
    }
    assert path_of(module_call("rbac")["params"]["appPrincipalId"]) == ("identity", "outputs", "principalId")


def test_blob_roles_cover_the_connector_host_and_deployment_containers_and_nothing_else() -> None:
    main, calls = parse(MAIN), module_call("rbac")["params"]
    written, read = resolve(main, calls["appContainerNames"]), resolve(main, calls["appReadContainerNames"])
    assert read == list(settings.BLOB_CONTAINERS_READ_ONLY) == ["sales-order-payloads"]
    assert sorted(written + read) == sorted(settings.BLOB_CONTAINERS) and not set(written) & set(read)
    host = function_of(calls["hostContainerNames"], "concat")
    assert resolve(main, host["arg_1"]) == HOST_CONTAINERS
    assert host["arg_2"] == ["deploymentContainerName"]
    # The containers exist before the roles: rbac reads the account name from the storage module.
    assert path_of(calls["storageAccountName"]) == ("storage", "outputs", "name")
    rbac = module("rbac")
    for symbol in ("appContainers", "appReadContainers", "hostContainers"):
        container = rbac["resources"][symbol]
        assert container["existing"] and body(container)["parent"] == "blobService"


def test_app_roles_name_a_service_principal_and_deployer_roles_are_optional() -> None:
    rbac = module("rbac")
    for symbol, resource in resources_of_type(rbac, ROLE_ASSIGNMENT).items():
        properties = body(resource)["properties"]
        if properties["principalId"] == "appPrincipalId":
            assert properties["principalType"] == "ServicePrincipal", symbol
        else:
            assert condition_of(resource), f"{symbol}: deployer roles must be optional"


# ---------------------------------------------------------------------------------------------------------
# Monitoring: diagnostic settings and local auth

# module -> {scope symbol: (log category groups, metric categories)}
DIAGNOSTICS = {
    "keyvault": {"vault": (["audit"], ["AllMetrics"])},
    "storage": {
        "storage": ([], ["Transaction"]),
        "blobService": (["audit"], ["Transaction"]),
        "queueService": (["audit"], ["Transaction"]),
        "tableService": (["audit"], ["Transaction"]),
    },
    "function-app": {"site": (["allLogs"], ["AllMetrics"])},
}


@pytest.mark.parametrize("name", sorted(DIAGNOSTICS))
def test_resource_logs_and_metrics_go_to_the_log_analytics_workspace(name: str) -> None:
    template = module(name)
    found = {}
    for symbol, resource in resources_of_type(template, DIAGNOSTIC_SETTINGS).items():
        config = body(resource)
        properties = merged_object(template, config["properties"])
        assert properties["workspaceId"] == "logAnalyticsWorkspaceId", symbol
        for entry in properties.get("logs", []) + properties.get("metrics", []):
            assert entry["enabled"] is True, symbol
        found[config["scope"]] = ([e["categoryGroup"] for e in properties.get("logs", [])],
                                  [e["category"] for e in properties.get("metrics", [])])
    assert found == DIAGNOSTICS[name]
    assert path_of(module_call(name)["params"]["logAnalyticsWorkspaceId"]) == (
        "monitoring", "outputs", "logAnalyticsWorkspaceId")
    assert decorators(template["parameters"]["logAnalyticsWorkspaceId"])["description"]


def test_log_analytics_and_application_insights_accept_only_entra_id() -> None:
    monitoring = module("monitoring")
    workspace = only_resource(monitoring, "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    assert only_resource(monitoring, APP_INSIGHTS)["properties"]["DisableLocalAuth"] is True
    assert monitoring["outputs"]["logAnalyticsWorkspaceId"]["value"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "workspace", "operand_2": "id"}}}


# ---------------------------------------------------------------------------------------------------------
# Alerts and workbook

# The OpenTelemetry metrics the connector emits (connector/telemetry.py), dimension `connection` on each.
METRIC_NAMES = {
    "bc_connector.orders", "bc_connector.events", "bc_connector.bc_requests", "bc_connector.bc_throttled",
    "bc_connector.backoff_seconds", "bc_connector.token_failures", "bc_connector.subscriptions",
    "bc_connector.poison_depth", "bc_connector.seconds_since_pull", "bc_connector.seconds_since_sweep",
    "bc_connector.change_to_event_seconds",
}
ALERT_QUERIES = {  # alert -> (what its query reads, the dimension it fires per)
    "poison-messages": ({"bc_connector.poison_depth"}, "queue"),
    "token-failures": ({"bc_connector.token_failures"}, "connection"),
    "health-events": ({"traces"}, "type"),
    "subscriptions": ({"bc_connector.subscriptions", "bc_connector.seconds_since_pull",
                       "bc_connector.seconds_since_sweep"}, "connection"),
    "function-failures": ({"requests"}, "name"),
    "pull-overdue": ({"bc_connector.seconds_since_pull"}, "connection"),
    "sweep-overdue": ({"bc_connector.seconds_since_sweep"}, "connection"),
}


def _query_text(value: Any) -> str:
    """A KQL string, or the format string of `format(query, ...)` with its {n} placeholders."""
    formatted = function_of(value, "format")
    return formatted["format_string"] if formatted else value


def _reads(query: str) -> set[str]:
    names = set(re.findall(r'"(bc_connector\.\w+)"', query))
    return names or {query.split()[0]}


def test_metric_names_match_what_the_connector_emits() -> None:
    try:
        telemetry = importlib.import_module("connector.telemetry")
    except ModuleNotFoundError:
        pytest.skip("connector/telemetry.py is not on this branch yet")
    emitted = {v for k, v in vars(telemetry).items() if k.isupper() and str(v).startswith("bc_connector.")}
    assert emitted == METRIC_NAMES


def test_alert_rules_query_the_connector_metrics_and_fire_per_connection_queue_or_function() -> None:
    alerts = module("alerts")
    rules = resolve(alerts, "alerts")
    assert {rule["name"]: (_reads(_query_text(rule["query"])), rule["dimension"]) for rule in rules} == (
        ALERT_QUERIES)
    for rule in rules:
        query = _query_text(rule["query"])
        assert f'extend {rule["dimension"]} =' in query or f'by {rule["dimension"]}' in query, rule["name"]
        assert rule["description"] and rule["displayName"].startswith("bc-connector: ")
        assert rule["severity"] in (1, 2, 3)
    (resource,) = resources_of_type(alerts, "Microsoft.Insights/scheduledQueryRules").values()
    assert loop_of(resource)["detail"]["array_name"] == "alerts"
    properties = body(resource)["properties"]
    assert properties["scopes"] == ["applicationInsightsId"]
    (criterion,) = properties["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count", "GreaterThan", 0)
    assert criterion["dimensions"][0]["values"] == ["*"]
    assert [path_of(group) for group in properties["actions"]["actionGroups"]] == [("actionGroup", "id")]
    assert properties["autoMitigate"] is True
    assert path_of(module_call("alerts")["params"]["applicationInsightsId"]) == (
        "monitoring", "outputs", "applicationInsightsId")


def test_readme_tells_what_each_alert_means_and_what_to_do() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Operate it: alerts"):]
    section = section[:section.index("\n## ", 1)]
    rows = {line.split("|")[1].strip().split("`")[1]: line for line in section.splitlines()
            if line.startswith("| `")}
    assert set(rows) == set(ALERT_QUERIES)
    for name, (reads, _) in ALERT_QUERIES.items():
        for metric in reads - {"requests"}:
            assert metric in rows[name] or name == "subscriptions", f"README row of {name} lacks {metric}"
    for metric in METRIC_NAMES:
        assert f"`{metric}`" in section, f"README does not name {metric}"


def test_subscription_alert_counts_the_states_the_connector_saves() -> None:
    source = (ROOT / "connector" / "webhooks" / "subscriptions.py").read_text()
    saved = set(re.findall(r'save\(trigger, "(\w+)"', source))
    (rule,) = [r for r in resolve(module("alerts"), "alerts") if r["name"] == "subscriptions"]
    used = set(re.findall(r'state == "(\w+)"', _query_text(rule["query"])))
    assert used == {"active", "failed"} and used <= saved, f"the connector saves {saved}"


def test_overdue_alerts_wait_two_periods_of_the_default_schedules_unless_told_otherwise() -> None:
    main, alerts = parse(MAIN), module("alerts")
    periods = resolve(main, "connector")["schedulePeriodSeconds"]
    assert set(periods) == {s.name for s in settings.SETTINGS if s.name.endswith("_SCHEDULE")}
    for param, override, setting in (("pullOverdueSeconds", "itemPullPeriodSeconds", "ITEM_PULL_SCHEDULE"),
                                     ("sweepOverdueSeconds", "sweepPeriodSeconds", "SWEEP_SCHEDULE")):
        passed = module_call("alerts")["params"][param]["operator"]
        assert passed["type"] == "multiply" and passed["operands"]["operand_1"] == 2
        choice = passed["operands"]["operand_2"]["operator"]["operands"]
        assert choice["condition"] == {"operator": {"type": "greater_than", "operands": {
            "operand_1": override, "operand_2": 0}}}
        assert choice["true_value"] == override and main["parameters"][override]["default"] == 0
        assert path_of(choice["false_value"]) == ("connector", "schedulePeriodSeconds", setting)
        rule = {r["name"]: r for r in resolve(alerts, "alerts")}[param.replace("OverdueSeconds", "-overdue")]
        assert function_of(rule["query"], "format")["arg_1"] == param
        assert "| where value > {0}" in _query_text(rule["query"])


def test_action_group_mails_the_optional_address() -> None:
    group = only_resource(module("alerts"), "Microsoft.Insights/actionGroups")
    receivers = group["properties"]["emailReceivers"]["operator"]
    assert receivers["type"] == "conditional"
    assert function_of(receivers["operands"]["condition"], "empty") == {"item_to_test": "alertEmail"}
    assert receivers["operands"]["true_value"] == []
    assert receivers["operands"]["false_value"][0]["emailAddress"] == "alertEmail"
    assert len(group["properties"]["groupShortName"]) <= 12
    assert parse(MAIN)["parameters"]["alertEmail"]["default"] == ""
    assert module_call("alerts")["params"]["alertEmail"] == "alertEmail"


def test_workbook_charts_throughput_latency_and_failures_per_connection() -> None:
    workbook = module("workbook")
    panels = resolve(workbook, "panels")
    read = set().union(*(_reads(panel["query"]) for panel in panels))
    assert read == METRIC_NAMES | {"requests"}, f"unused or unknown: {read ^ (METRIC_NAMES | {'requests'})}"
    for panel in panels:
        if panel["query"].split()[0] == "customMetrics":
            assert 'customDimensions["connection"]' in panel["query"], panel["title"]
        assert panel["visualization"] in ("timechart", "table")
    titles = " ".join(panel["title"] for panel in panels)
    for topic in ("orders", "Events", "change to event", "429s", "Failures", "poison"):
        assert topic in titles
    resource = only_resource(workbook, "Microsoft.Insights/workbooks")
    assert resource["kind"] == "shared"
    assert resource["properties"]["sourceId"] == "applicationInsightsId"
    data = function_of(resource["properties"]["serializedData"], "string")
    assert data is not None, "serializedData must be the workbook object as a string"


# ---------------------------------------------------------------------------------------------------------
# azd

def test_azure_yaml_deploys_the_repository_as_the_python_function_service_api() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert project["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}


def test_azd_parameters_fill_main_bicep_from_the_environment() -> None:
    main = parse(MAIN)["parameters"]
    values = {name: spec["value"] for name, spec in
              json.loads((INFRA / "main.parameters.json").read_text())["parameters"].items()}
    assert set(values) <= set(main)
    assert {name for name, spec in main.items() if spec["default"] is None} <= set(values)
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    for name, value in values.items():
        assert re.fullmatch(r"\$\{[A-Z_]+\}", value), f"{name}: a literal or a default (the code has them)"


# ---------------------------------------------------------------------------------------------------------
# The real compiler, where a machine has it

@pytest.mark.parametrize("action", ["build", "lint"])
def test_bicep_cli_builds_and_lints_main(action: str, tmp_path: Path) -> None:
    if shutil.which("bicep"):
        args = ["bicep", action, str(MAIN)]
    elif shutil.which("az"):
        args = ["az", "bicep", action, "--file", str(MAIN)]
    else:
        pytest.skip("neither bicep nor az is on PATH (the Bicep CLI ships only through NuGet and GitHub)")
    if action == "build":
        args += ["--outdir", str(tmp_path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------
# Closing storage and Key Vault to public networks (issue 20)

def _network_acls(name: str, kind: str) -> dict[str, Any]:
    return only_resource(module(name), kind)["properties"]["networkAcls"]


@pytest.mark.parametrize(("name", "kind"), [("storage", STORAGE_ACCOUNT), ("keyvault", KEY_VAULT)])
def test_a_parameter_closes_storage_and_key_vault_to_public_networks(name: str, kind: str) -> None:
    acls = _network_acls(name, kind)
    default = acls["defaultAction"]["operator"]
    assert default["type"] == "conditional" and default["operands"]["condition"] == "restrictNetworkAccess"
    assert (default["operands"]["true_value"], default["operands"]["false_value"]) == ("Deny", "Allow")
    assert acls["bypass"] == "AzureServices"
    assert "allowedSubnetIds" in json.dumps(acls["virtualNetworkRules"])
    assert "allowedIpRanges" in json.dumps(acls["ipRules"])
    params = module_call(name)["params"]
    assert {k: params[k] for k in ("restrictNetworkAccess", "allowedSubnetIds", "allowedIpRanges")} == {
        "restrictNetworkAccess": "restrictNetworkAccess", "allowedSubnetIds": "allowedSubnetIds",
        "allowedIpRanges": "allowedIpRanges"}
    main = parse(MAIN)
    assert main["parameters"]["restrictNetworkAccess"]["default"] is False  # open unless asked
    assert main["parameters"]["allowedSubnetIds"]["default"] == []


def test_with_network_rules_the_app_joins_the_first_allowed_subnet() -> None:
    site = only_resource(module("function-app"), "Microsoft.Web/sites")
    assert "virtualNetworkSubnetId" in json.dumps(site["properties"]["virtualNetworkSubnetId"])
    assert "allowedSubnetIds" in json.dumps(module_call("function-app")["params"]["virtualNetworkSubnetId"])
