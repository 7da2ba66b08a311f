//! The configuration tree: layers merged key by key, remembering which layer set each key.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A merged configuration and, for every key, the layer that set it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tree {
    pub(crate) root: Value,
    origins: BTreeMap<String, String>,
}

impl Tree {
    pub(crate) fn new() -> Self {
        Self {
            root: Value::Object(Map::new()),
            origins: BTreeMap::new(),
        }
    }

    /// Lays `layer` over the tree: objects merge key by key, anything else replaces.
    pub(crate) fn merge(&mut self, layer: Value, origin: &str) {
        merge_into(
            &mut self.root,
            layer,
            String::new(),
            origin,
            &mut self.origins,
        );
    }

    /// The value at a dotted `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        if key.is_empty() {
            return Some(&self.root);
        }
        key.split('.')
            .try_fold(&self.root, |value, segment| value.get(segment))
    }

    /// The layer that set `key` or, failing that, its nearest parent.
    pub(crate) fn origin(&self, key: &str) -> Option<&str> {
        let mut key = key;
        loop {
            if let Some(origin) = self.origins.get(key) {
                return Some(origin);
            }
            key = &key[..key.rfind('.')?];
        }
    }
}

fn merge_into(
    target: &mut Value,
    layer: Value,
    path: String,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) {
    match (target, layer) {
        (Value::Object(target), Value::Object(layer)) => {
            for (key, value) in layer {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let slot = target.entry(key).or_insert(Value::Null);
                merge_into(slot, value, child, origin, origins);
            }
        }
        (target, layer) => {
            let prefix = format!("{path}.");
            origins.retain(|key, _| !key.starts_with(&prefix));
            origins.insert(path, origin.to_owned());
            *target = layer;
        }
    }
}

/// Turns Spring-style flat keys (`clients.inventory.retry.max_attempts`, `hosts[0]`) into a
/// tree.
pub(crate) fn unflatten(flat: impl IntoIterator<Item = (String, Value)>) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in flat {
        let segments: Vec<Segment<'_>> = key.split('.').flat_map(segments).collect();
        insert(&mut root, &segments, value);
    }
    root
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `hosts[0][1]` → `hosts`, 0, 1.
fn segments(part: &str) -> Vec<Segment<'_>> {
    let Some(open) = part.find('[') else {
        return vec![Segment::Key(part)];
    };
    let mut out = vec![Segment::Key(&part[..open])];
    for index in part[open..].split('[').skip(1) {
        match index.trim_end_matches(']').parse() {
            Ok(i) => out.push(Segment::Index(i)),
            Err(_) => return vec![Segment::Key(part)],
        }
    }
    out
}

/// Longest list a flat `key[i]` may create, so a hostile index cannot exhaust memory.
const MAX_FLAT_INDEX: usize = 4096;

fn insert(target: &mut Value, segments: &[Segment<'_>], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        *target = value;
        return;
    };
    match first {
        Segment::Key(key) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let slot = target
                .as_object_mut()
                .map(|map| map.entry(key.to_string()).or_insert(Value::Null));
            if let Some(slot) = slot {
                insert(slot, rest, value);
            }
        }
        Segment::Index(index) if *index < MAX_FLAT_INDEX => {
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            if let Value::Array(items) = target {
                if items.len() <= *index {
                    items.resize(index + 1, Value::Null);
                }
                insert(&mut items[*index], rest, value);
            }
        }
        Segment::Index(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn later_layers_win_key_by_key_and_origins_follow() {
        let mut tree = Tree::new();
        tree.merge(json!({"a": {"x": 1, "y": 2}, "b": [1, 2]}), "defaults");
        tree.merge(json!({"a": {"y": 3}, "b": [9]}), "mesh.yaml");
        assert_eq!(tree.root, json!({"a": {"x": 1, "y": 3}, "b": [9]}));
        assert_eq!(tree.origin("a.x"), Some("defaults"));
        assert_eq!(tree.origin("a.y"), Some("mesh.yaml"));
        assert_eq!(tree.origin("b"), Some("mesh.yaml"));
        assert_eq!(tree.origin("a.y.deeper"), Some("mesh.yaml"));
        assert_eq!(tree.get("a.y"), Some(&json!(3)));
        assert_eq!(tree.get("a.z"), None);
    }

    #[test]
    fn a_replaced_object_forgets_the_origins_beneath_it() {
        let mut tree = Tree::new();
        tree.merge(json!({"a": {"x": 1}}), "defaults");
        tree.merge(json!({"a": 5}), "env");
        assert_eq!(tree.origin("a.x"), Some("env"));
    }

    #[test]
    fn flat_keys_become_a_tree() {
        let tree = unflatten([
            ("clients.inventory.retry.max_attempts".to_owned(), json!(5)),
            ("hosts[1]".to_owned(), json!("b")),
            ("hosts[0]".to_owned(), json!("a")),
            ("huge[999999999]".to_owned(), json!("ignored")),
        ]);
        assert_eq!(tree["clients"]["inventory"]["retry"]["max_attempts"], 5);
        assert_eq!(tree["hosts"], json!(["a", "b"]));
        assert_eq!(tree["huge"], Value::Null);
    }
}
