//! Schema dialects: JSON Schema -> Google's OpenAPI subset for function `parameters`
//! (`sanitize_schema`), and the reverse for schemas Gemini clients send (`openapi_to_json_schema`).

use serde_json::{Map, Value, json};

/// Keywords Gemini's `Schema` accepts; everything else is dropped (unknown keywords make the
/// API reject the whole request).
const KEPT_KEYWORDS: [&str; 20] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "anyOf",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
];

/// How deep `$ref`s are inlined before giving up (guards against cyclic definitions).
const MAX_REF_DEPTH: usize = 16;

/// Rewrites a JSON Schema into the subset Gemini accepts for function `parameters`:
/// - local `$ref`s into `$defs` / `definitions` are inlined (cyclic or unresolvable ones dropped);
/// - `type: [t, "null"]` and `anyOf`/`oneOf` with a null branch become `nullable: true`;
///   several non-null types become `anyOf`; `oneOf` becomes `anyOf`; `allOf` is merged;
/// - `const` (string) becomes a one-value `enum`; enums with non-string values are dropped;
/// - `format` is kept only where Gemini knows it (string: `enum`, `date-time`; integer:
///   `int32`, `int64`; number: `float`, `double`);
/// - `required` keeps only names present in `properties`; empty `properties` are dropped;
/// - every other keyword (`$schema`, `additionalProperties`, `default`, `examples`,
///   `exclusiveMinimum`, `patternProperties`, ...) is dropped.
pub fn sanitize_schema(schema: &Value) -> Value {
    let mut refs = Vec::new();
    sanitize_node(schema, schema, &mut refs)
}

/// `refs` holds the `$ref`s being inlined on the current path, to stop cycles.
fn sanitize_node(node: &Value, root: &Value, refs: &mut Vec<String>) -> Value {
    let Value::Object(obj) = node else {
        // Boolean schemas (`true` = anything) have no Gemini form.
        return Value::Object(Map::new());
    };
    if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
        let resolved = (refs.len() < MAX_REF_DEPTH && !refs.iter().any(|r| r == target))
            .then(|| resolve_local_ref(root, target))
            .flatten();
        let mut out = match resolved {
            Some(def) => {
                refs.push(target.to_owned());
                let v = sanitize_node(def, root, refs);
                refs.pop();
                v
            }
            None => Value::Object(Map::new()),
        };
        // Siblings of `$ref` (usually a description) refine the inlined schema.
        let siblings: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| *k != "$ref")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !siblings.is_empty()
            && let (Value::Object(out_obj), Value::Object(extra)) = (
                &mut out,
                sanitize_node(&Value::Object(siblings), root, refs),
            )
        {
            for (k, v) in extra {
                out_obj.insert(k, v);
            }
        }
        return out;
    }

    let mut out = Map::new();
    let mut nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // type: a string, or a list possibly containing "null".
    let mut type_variants: Vec<String> = Vec::new();
    match obj.get("type") {
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(Value::String(t)) => type_variants.push(t.clone()),
        Some(Value::Array(ts)) => {
            for t in ts.iter().filter_map(Value::as_str) {
                if t == "null" {
                    nullable = true;
                } else {
                    type_variants.push(t.to_owned());
                }
            }
        }
        _ => {}
    }

    // anyOf / oneOf: drop null branches (-> nullable), hoist a single remaining branch.
    let mut branches: Vec<Value> = Vec::new();
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get(key) {
            for item in items {
                if is_null_schema(item) {
                    nullable = true;
                } else {
                    branches.push(sanitize_node(item, root, refs));
                }
            }
        }
    }

    for (key, value) in obj {
        match key.as_str() {
            "properties" => {
                if let Value::Object(props) = value {
                    let props: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), sanitize_node(s, root, refs)))
                        .collect();
                    if !props.is_empty() {
                        out.insert(key.clone(), Value::Object(props));
                    }
                }
            }
            "items" => {
                let item = match value {
                    // Tuple form: Gemini has one item schema; the first is the best guess.
                    Value::Array(items) => items.first(),
                    other => Some(other),
                };
                if let Some(item) = item {
                    out.insert(key.clone(), sanitize_node(item, root, refs));
                }
            }
            "enum" => {
                if let Value::Array(values) = value {
                    if values.iter().any(Value::is_null) {
                        nullable = true;
                    }
                    let values: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
                    if !values.is_empty() && values.iter().all(|v| v.is_string()) {
                        out.insert(key.clone(), json!(values));
                    }
                }
            }
            "const" => match value {
                Value::String(_) => {
                    out.insert("enum".to_owned(), json!([value]));
                    if type_variants.is_empty() {
                        type_variants.push("string".to_owned());
                    }
                }
                Value::Null => nullable = true,
                _ => {}
            },
            "type" | "anyOf" | "oneOf" | "allOf" | "nullable" | "format" => {}
            k if KEPT_KEYWORDS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }

    if let Some(Value::Array(parts)) = obj.get("allOf") {
        for part in parts {
            if let Value::Object(part) = sanitize_node(part, root, refs) {
                merge_all_of(&mut out, part, &mut type_variants);
            }
        }
    }

    match type_variants.len() {
        0 => {}
        1 => {
            out.insert("type".to_owned(), Value::String(type_variants[0].clone()));
        }
        _ => {
            // Several non-null types: Gemini expresses that as anyOf.
            branches.extend(type_variants.iter().map(|t| json!({ "type": t })));
            type_variants.clear();
        }
    }

    match branches.len() {
        0 => {}
        1 => {
            if let Some(Value::Object(branch)) = branches.pop() {
                for (k, v) in branch {
                    out.entry(k).or_insert(v);
                }
            }
        }
        _ => {
            out.insert("anyOf".to_owned(), Value::Array(branches));
        }
    }

    if let Some(format) = obj.get("format").and_then(Value::as_str)
        && let Some(t) = out.get("type").and_then(Value::as_str)
        && format_supported(t, format)
    {
        out.insert("format".to_owned(), Value::String(format.to_owned()));
    }

    if let Some(required) = out.get("required").and_then(Value::as_array) {
        let props = out.get("properties").and_then(Value::as_object);
        let kept: Vec<Value> = required
            .iter()
            .filter(|name| {
                name.as_str()
                    .is_some_and(|n| props.is_some_and(|p| p.contains_key(n)))
            })
            .cloned()
            .collect();
        if kept.is_empty() {
            out.remove("required");
        } else {
            out.insert("required".to_owned(), Value::Array(kept));
        }
    }

    if nullable {
        out.insert("nullable".to_owned(), Value::Bool(true));
    }
    Value::Object(out)
}

fn resolve_local_ref<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    let found = root.pointer(pointer)?;
    found.is_object().then_some(found)
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

fn format_supported(ty: &str, format: &str) -> bool {
    matches!(
        (ty, format),
        ("string", "enum" | "date-time")
            | ("integer", "int32" | "int64")
            | ("number", "float" | "double")
    )
}

/// Folds one (sanitised) `allOf` member into the schema: properties and required names are
/// united, other keywords are taken when the schema lacks them.
fn merge_all_of(out: &mut Map<String, Value>, part: Map<String, Value>, types: &mut Vec<String>) {
    for (k, v) in part {
        match (k.as_str(), v) {
            ("properties", Value::Object(props)) => {
                let target = out.entry("properties").or_insert_with(|| json!({}));
                if let Value::Object(target) = target {
                    for (name, s) in props {
                        target.entry(name).or_insert(s);
                    }
                }
            }
            ("required", Value::Array(names)) => {
                let target = out.entry("required").or_insert_with(|| json!([]));
                if let Value::Array(target) = target {
                    for n in names {
                        if !target.contains(&n) {
                            target.push(n);
                        }
                    }
                }
            }
            ("type", Value::String(t)) => {
                if types.is_empty() {
                    types.push(t);
                }
            }
            (_, v) => {
                out.entry(k).or_insert(v);
            }
        }
    }
}

/// Rewrites a schema in Google's OpenAPI subset (what Gemini clients send as `parameters` and
/// `responseSchema`) as JSON Schema for other providers: type names lower-cased,
/// `nullable: true` folded into the type, the Google-only `format: enum` dropped.
pub fn openapi_to_json_schema(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "nullable" => {}
            "type" => {
                let t = match value {
                    Value::String(t) => Value::String(t.to_ascii_lowercase()),
                    other => other.clone(),
                };
                out.insert(key.clone(), t);
            }
            "format" if value.as_str() == Some("enum") => {}
            "properties" => {
                let props = match value {
                    Value::Object(p) => Value::Object(
                        p.iter()
                            .map(|(k, v)| (k.clone(), openapi_to_json_schema(v)))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                out.insert(key.clone(), props);
            }
            "items" => {
                out.insert(key.clone(), openapi_to_json_schema(value));
            }
            "anyOf" => {
                let items = match value {
                    Value::Array(items) => {
                        Value::Array(items.iter().map(openapi_to_json_schema).collect())
                    }
                    other => other.clone(),
                };
                out.insert(key.clone(), items);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if nullable {
        match out.get("type").cloned() {
            Some(Value::String(t)) => {
                out.insert("type".to_owned(), json!([t, "null"]));
            }
            _ => {
                if let Some(Value::Array(branches)) = out.get_mut("anyOf") {
                    branches.push(json!({"type": "null"}));
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_unsupported_keywords_and_keeps_title() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": "x",
            "title": "Args",
            "type": "object",
            "additionalProperties": false,
            "patternProperties": {"^x": {"type": "string"}},
            "unevaluatedProperties": false,
            "properties": {
                "n": {"type": "integer", "default": 3, "examples": [1], "exclusiveMinimum": 0,
                      "exclusiveMaximum": 9, "minimum": 1, "description": "count"}
            },
            "required": ["n"]
        });
        assert_eq!(
            sanitize_schema(&s),
            json!({
                "title": "Args",
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 1, "description": "count"}},
                "required": ["n"]
            })
        );
    }

    #[test]
    fn inlines_local_refs_and_drops_definitions() {
        let s = json!({
            "type": "object",
            "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
            "definitions": {"Name": {"type": "string"}},
            "properties": {
                "p": {"$ref": "#/$defs/Point", "description": "where"},
                "name": {"$ref": "#/definitions/Name"},
                "remote": {"$ref": "https://example.com/schema.json"}
            }
        });
        assert_eq!(
            sanitize_schema(&s),
            json!({
                "type": "object",
                "properties": {
                    "p": {"type": "object", "properties": {"x": {"type": "number"}}, "description": "where"},
                    "name": {"type": "string"},
                    "remote": {}
                }
            })
        );
    }

    #[test]
    fn cyclic_refs_stop() {
        let s = json!({
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            "$ref": "#/$defs/Node"
        });
        assert_eq!(
            sanitize_schema(&s),
            json!({"type": "object", "properties": {"next": {}}})
        );
    }

    #[test]
    fn const_becomes_enum() {
        assert_eq!(
            sanitize_schema(&json!({"const": "on"})),
            json!({"type": "string", "enum": ["on"]})
        );
        assert_eq!(
            sanitize_schema(&json!({"type": "integer", "const": 3})),
            json!({"type": "integer"})
        );
    }

    #[test]
    fn non_string_enums_are_dropped_and_null_members_make_nullable() {
        assert_eq!(
            sanitize_schema(&json!({"type": "integer", "enum": [1, 2]})),
            json!({"type": "integer"})
        );
        assert_eq!(
            sanitize_schema(&json!({"type": "string", "enum": ["a", null]})),
            json!({"type": "string", "enum": ["a"], "nullable": true})
        );
    }

    #[test]
    fn type_lists_collapse_to_nullable_or_any_of() {
        assert_eq!(
            sanitize_schema(&json!({"type": ["string", "null"]})),
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            sanitize_schema(&json!({"type": ["string", "integer"]})),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
    }

    #[test]
    fn any_of_and_one_of_with_a_null_branch_become_nullable() {
        assert_eq!(
            sanitize_schema(
                &json!({"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "description": "d"})
            ),
            json!({"type": "string", "maxLength": 5, "description": "d", "nullable": true})
        );
        assert_eq!(
            sanitize_schema(
                &json!({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]})
            ),
            json!({"anyOf": [{"type": "string"}, {"type": "number"}], "nullable": true})
        );
    }

    #[test]
    fn all_of_is_merged() {
        let s = json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
        ]});
        assert_eq!(
            sanitize_schema(&s),
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}}, "required": ["a", "b"]})
        );
    }

    #[test]
    fn formats_are_kept_only_where_gemini_knows_them() {
        let s = json!({"type": "object", "properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "kind": {"type": "string", "format": "enum", "enum": ["a"]},
            "big": {"type": "integer", "format": "int64"},
            "small": {"type": "integer", "format": "uint8"},
            "ratio": {"type": "number", "format": "double"},
            "odd": {"type": "number", "format": "int32"}
        }});
        assert_eq!(
            sanitize_schema(&s),
            json!({"type": "object", "properties": {
                "when": {"type": "string", "format": "date-time"},
                "mail": {"type": "string"},
                "kind": {"type": "string", "format": "enum", "enum": ["a"]},
                "big": {"type": "integer", "format": "int64"},
                "small": {"type": "integer"},
                "ratio": {"type": "number", "format": "double"},
                "odd": {"type": "number"}
            }})
        );
    }

    #[test]
    fn recurses_into_items_and_any_of_and_prunes_required_and_empty_properties() {
        let s = json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string", "default": "x"}},
                "pair": {"type": "array", "items": [{"type": "integer", "$comment": "c"}, {"type": "string"}]},
                "opts": {"type": "object", "properties": {}, "additionalProperties": true},
                "either": {"anyOf": [{"type": "string", "examples": ["e"]}, {"type": "object", "additionalProperties": false, "properties": {"k": {"type": "string"}}}]}
            },
            "required": ["tags", "ghost"]
        });
        assert_eq!(
            sanitize_schema(&s),
            json!({
                "type": "object",
                "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "pair": {"type": "array", "items": {"type": "integer"}},
                    "opts": {"type": "object"},
                    "either": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"k": {"type": "string"}}}]}
                },
                "required": ["tags"]
            })
        );
    }

    #[test]
    fn openapi_schemas_become_json_schema() {
        let s = json!({
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING", "nullable": true},
                "unit": {"type": "STRING", "format": "enum", "enum": ["c", "f"]},
                "days": {"type": "ARRAY", "items": {"type": "INTEGER", "format": "int32"}}
            },
            "required": ["city"]
        });
        assert_eq!(
            openapi_to_json_schema(&s),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": ["string", "null"]},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "days": {"type": "array", "items": {"type": "integer", "format": "int32"}}
                },
                "required": ["city"]
            })
        );
        // and back again
        let back = sanitize_schema(&openapi_to_json_schema(&s));
        assert_eq!(
            back["properties"]["city"],
            json!({"type": "string", "nullable": true})
        );
    }
}
