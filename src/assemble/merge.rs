//! Merging a delta into what arrived before it, the way openai-python's
//! stream accumulator does: strings are joined, objects merged member by
//! member, arrays merged by their elements' `index`, anything else replaced
//! by its latest value. A `null` never erases what arrived.

use serde_json::{Map, Value};

/// Merges `delta` into `into`.
pub fn merge_object(into: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (k, v) in delta {
        match into.get_mut(k) {
            None => {
                into.insert(k.clone(), v.clone());
            }
            Some(old) => merge_value(old, v),
        }
    }
}

fn merge_value(old: &mut Value, new: &Value) {
    match (old, new) {
        (_, Value::Null) => {}
        (Value::String(a), Value::String(b)) => a.push_str(b),
        (Value::Object(a), Value::Object(b)) => merge_object(a, b),
        (Value::Array(a), Value::Array(b)) => merge_array(a, b),
        (old, new) => *old = new.clone(),
    }
}

/// Elements with an `index` go to the element of the same `index`;
/// elements without one are appended.
fn merge_array(into: &mut Vec<Value>, delta: &[Value]) {
    for d in delta {
        let idx = d.get("index").and_then(Value::as_u64);
        let at = idx.and_then(|i| {
            into.iter()
                .position(|e| e.get("index").and_then(Value::as_u64) == Some(i))
        });
        match (at, d) {
            (Some(p), Value::Object(b)) => {
                if let Value::Object(a) = &mut into[p] {
                    merge_object(a, b);
                }
            }
            _ => into.push(d.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(a: Value, b: Value) -> Value {
        let (Value::Object(mut a), Value::Object(b)) = (a, b) else {
            panic!("objects")
        };
        merge_object(&mut a, &b);
        Value::Object(a)
    }

    #[test]
    fn strings_join_objects_merge_arrays_by_index_nulls_keep() {
        let v = merged(
            json!({"content": "He", "x": {"a": "1"}, "arr": [{"index": 0, "t": "a"}], "n": 1, "keep": "k"}),
            json!({"content": "llo", "x": {"a": "2", "b": true}, "arr": [{"index": 0, "t": "b"}, {"index": 1, "t": "c"}], "n": 2, "keep": null}),
        );
        assert_eq!(
            v,
            json!({"content": "Hello", "x": {"a": "12", "b": true}, "arr": [{"index": 0, "t": "ab"}, {"index": 1, "t": "c"}], "n": 2, "keep": "k"})
        );
    }
}
