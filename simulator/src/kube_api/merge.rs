//! JSON merge patch (RFC 7386): objects merge key by key, `null` removes a key,
//! anything else replaces.

use serde_json::Value;

/// Applies `patch` to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                target_fields.remove(key);
            } else {
                merge_patch(target_fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
        let mut list = json!({"a": [1, 2]});
        merge_patch(&mut list, &json!({"a": [3]}));
        assert_eq!(list, json!({"a": [3]}));
        let mut fresh = json!({});
        merge_patch(&mut fresh, &json!({"spec": {"unschedulable": true}}));
        assert_eq!(fresh, json!({"spec": {"unschedulable": true}}));
    }
}
