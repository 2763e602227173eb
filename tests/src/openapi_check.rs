//! Checking real responses against an OpenAPI document: the operations it
//! lists, and whether a reply's status is listed and its body validates
//! against the schema given for that status.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use upkeep_net::routing::ApiMethod;

use crate::client::Reply;

/// The document at `path`, relative to the workspace's root.
pub fn document(path: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("valid JSON")
}

/// A method as the document's path items name it.
pub fn method_key(method: ApiMethod) -> &'static str {
    match method {
        ApiMethod::Get => "get",
        ApiMethod::Post => "post",
        ApiMethod::Patch => "patch",
    }
}

/// Every (path, method) the document lists.
pub fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|key| ["get", "post", "put", "delete", "patch", "head", "options"].contains(&key.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect()
}

/// Validates a reply against the schema the document gives for its status.
pub fn assert_conforms(doc: &Value, template: &str, method: &str, reply: &Reply) {
    let errors = violations(doc, template, method, reply);
    assert!(
        errors.is_empty(),
        "{method} {template} {}: {errors:#?}\nbody: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
}

/// What in a reply breaks the document's schema for its status.
pub fn violations(doc: &Value, template: &str, method: &str, reply: &Reply) -> Vec<String> {
    let responses = &doc["paths"][template][method]["responses"];
    let response = &responses[reply.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {} which the document does not list (it lists {:?})",
        reply.status,
        responses.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())
    );
    if reply.body.is_empty() && reply.header("content-type").is_none() {
        return vec![format!("{} came without a body, which the document does not allow", reply.status)];
    }
    let content_type = reply.header("content-type").unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim().to_owned();
    let content = &response["content"];
    let schema =
        if content[&content_type].is_object() { &content[&content_type]["schema"] } else { &content[&media]["schema"] };
    assert!(schema.is_object(), "{method} {template} {}: no schema for {media}", reply.status);
    if media != "application/json" {
        return Vec::new();
    }
    schema_violations(doc, schema, &reply.json())
}

/// What in `value` breaks `schema` (which may refer to the document's components).
pub fn schema_violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut rooted = schema.clone();
    rooted["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&rooted)
        .unwrap_or_else(|error| panic!("schema {schema} does not compile: {error}"));
    validator.iter_errors(value).map(|error| format!("{} at {}", error, error.instance_path())).collect()
}
