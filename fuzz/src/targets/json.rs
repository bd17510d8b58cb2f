//! JSON helpers for the oracles: a document read with `serde_json` as the reference, but only
//! when it is an object whose top-level keys are all different (where readers may disagree on
//! which of two equal keys wins, no oracle can say who is right).

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// `bytes` as a JSON object, when it is one with unique top-level keys.
pub fn unique_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let keys = top_level_keys(bytes)?;
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != keys.len() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// The value at `path` (object keys from the top), if there is one.
pub fn value_at<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = object.get(*first)?;
    if rest.is_empty() {
        return Some(value);
    }
    value_at(value.as_object()?, rest)
}

/// The top-level keys of a JSON object, in order, repeats included.
fn top_level_keys(bytes: &[u8]) -> Option<Vec<String>> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let keys = (&mut deserializer).deserialize_map(Keys).ok()?;
    deserializer.end().ok()?;
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_with_unique_keys_are_references() {
        assert!(unique_object(br#"{"a":1,"b":{"a":2,"a":3}}"#).is_some());
        assert!(unique_object(br#"{"a":1,"a":2}"#).is_none());
        assert!(unique_object(br#"[1]"#).is_none());
        assert!(unique_object(br#"{"a":1} x"#).is_none());
        let object = unique_object(br#"{"r":{"u":7}}"#).unwrap_or_default();
        assert_eq!(value_at(&object, &["r", "u"]), Some(&Value::from(7)));
        assert_eq!(value_at(&object, &["u"]), None);
    }
}
