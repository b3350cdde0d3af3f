//! The editor's settings: JSON from `initializationOptions` and
//! `didChangeConfiguration` as TOML tables, layered over each other.

use serde_json::Value;

/// JSON settings (from the editor) as a TOML table, dropping nulls TOML cannot hold.
pub(super) fn settings_table(value: &Value) -> Option<toml::Table> {
    fn clean(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Array(a) => Some(Value::Array(a.iter().filter_map(clean).collect())),
            other => Some(other.clone()),
        }
    }
    let v = clean(value.get("ragls").unwrap_or(value))?;
    serde_json::from_value::<toml::Table>(v).ok()
}

/// The settings in force after a `didChangeConfiguration`: its table layered on top of
/// the `initializationOptions` (which it overrides key by key, tables merged deeply).
pub(super) fn layered(init_options: Option<toml::Table>, change: toml::Table) -> toml::Table {
    let mut merged = init_options.unwrap_or_default();
    crate::config::deep_merge(&mut merged, change);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn editor_json_becomes_a_table_without_nulls_under_an_optional_ragls_key() {
        let t = settings_table(
            &json!({ "ragls": { "rerank": { "topK": null, "enabled": false }, "x": [1, null] } }),
        )
        .expect("a table");
        assert_eq!(t["rerank"]["enabled"].as_bool(), Some(false));
        assert!(t["rerank"].get("topK").is_none());
        assert_eq!(t["x"].as_array().map(Vec::len), Some(1));
        let flat = settings_table(&json!({ "chat": { "model": "m" } })).expect("a table");
        assert_eq!(flat["chat"]["model"].as_str(), Some("m"));
        assert!(settings_table(&json!(5)).is_none());
    }

    #[test]
    fn changed_settings_layer_over_the_initialization_options() {
        let init = settings_table(
            &json!({ "chat": { "model": "a", "max_context_tokens": 100 }, "rerank": { "enabled": false } }),
        );
        let change = settings_table(&json!({ "chat": { "model": "b" } })).expect("a table");
        let t = layered(init, change);
        assert_eq!(t["chat"]["model"].as_str(), Some("b"));
        assert_eq!(t["chat"]["max_context_tokens"].as_integer(), Some(100));
        assert_eq!(t["rerank"]["enabled"].as_bool(), Some(false));
        let alone = layered(None, settings_table(&json!({ "a": 1 })).expect("a table"));
        assert_eq!(alone["a"].as_integer(), Some(1));
    }
}
