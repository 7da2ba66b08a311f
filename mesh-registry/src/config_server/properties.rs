//! Configuration files as Spring reads them: YAML flattened to `dotted.keys` (lists as
//! `key[0]`), `.properties` lines, and the renderings back (`.yml`, `.properties`, `.json`).

use serde_json::{Map, Value};

use super::ConfigError;

/// Flat `key → value` pairs, in the file's order.
pub(super) type Flat = Vec<(String, Value)>;

/// The flat properties of a YAML document (an empty file has none).
pub(super) fn from_yaml(name: &str, bytes: &[u8]) -> Result<Flat, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Flat::new());
    }
    let document: Value = serde_norway::from_slice(bytes)
        .map_err(|error| ConfigError::Read(format!("{name}: {error}")))?;
    let mut flat = Flat::new();
    flatten("", &document, &mut flat);
    Ok(flat)
}

fn flatten(prefix: &str, value: &Value, out: &mut Flat) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, value, out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{index}]"), item, out);
            }
        }
        scalar if !prefix.is_empty() => out.push((prefix.to_owned(), scalar.clone())),
        _ => {}
    }
}

/// The properties of a `.properties` file (Java's format: `key=value`, `key: value` or
/// `key value`; `#` and `!` comments; a trailing `\` continues the line; `\n`, `\t`, `\uXXXX`
/// escapes). Every value is a string.
pub(super) fn from_properties(bytes: &[u8]) -> Flat {
    let text = String::from_utf8_lossy(bytes);
    let mut flat = Flat::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with(['#', '!'])) {
            continue;
        }
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (key, value) = split_property(&logical);
        flat.push((unescape(key), Value::String(unescape(value))));
        logical.clear();
    }
    if !logical.is_empty() {
        let (key, value) = split_property(&logical);
        flat.push((unescape(key), Value::String(unescape(value))));
    }
    flat
}

/// The key and the value of a logical line: split at the first unescaped `=`, `:` or blank.
fn split_property(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (line[..i].trim_end(), line[i + 1..].trim_start()),
            b' ' | b'\t' | b'\x0c' => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).map_or(rest, str::trim_start);
                return (&line[..i], rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `flat` as a `.properties` file, one `key=value` line each.
pub(super) fn to_properties(flat: &[(String, Value)]) -> String {
    let mut out = String::new();
    for (key, value) in flat {
        let value = match value {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out.push_str(&escape(key, true));
        out.push('=');
        out.push_str(&escape(&value, false));
        out.push('\n');
    }
    out
}

fn escape(text: &str, key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' | ' ' if key => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// `flat` as a nested document: `a.b[0]` becomes `{"a": {"b": [..]}}`. A key that cannot
/// nest (its parent is already a value) is kept whole at its level.
pub(super) fn nest(flat: &Flat) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in flat {
        let mut node = &mut root;
        let parts = path(key);
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            node = match (part, node) {
                (Part::Key(name), Value::Object(map)) => {
                    if i == last {
                        map.insert(name.clone(), value.clone());
                        break;
                    }
                    map.entry(name.clone())
                        .or_insert_with(|| empty_for(&parts[i + 1]))
                }
                (Part::Index(index), Value::Array(items)) => {
                    while items.len() <= *index {
                        items.push(Value::Null);
                    }
                    if i == last {
                        items[*index] = value.clone();
                        break;
                    }
                    if items[*index].is_null() {
                        items[*index] = empty_for(&parts[i + 1]);
                    }
                    &mut items[*index]
                }
                (_, _) => break,
            };
        }
    }
    root
}

enum Part {
    Key(String),
    Index(usize),
}

fn empty_for(next: &Part) -> Value {
    match next {
        Part::Key(_) => Value::Object(Map::new()),
        Part::Index(_) => Value::Array(Vec::new()),
    }
}

/// `a.b[0].c` → `a`, `b`, `0`, `c`.
fn path(key: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    for segment in key.split('.') {
        let (name, mut rest) = segment
            .split_once('[')
            .map_or((segment, ""), |(name, rest)| (name, rest));
        if !name.is_empty() {
            parts.push(Part::Key(name.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            match index.parse() {
                Ok(index) => parts.push(Part::Index(index)),
                Err(_) => parts.push(Part::Key(format!("[{index}]"))),
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    if parts.is_empty() {
        parts.push(Part::Key(key.to_owned()));
    }
    parts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_flattens_as_spring_names_it() {
        let mut flat = from_yaml(
            "a.yml",
            b"server:\n  port: 8080\nclients:\n  orders:\n    timeout: 2s\nhosts: [a, b]\nempty:\n",
        )
        .unwrap();
        flat.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            flat,
            vec![
                ("clients.orders.timeout".into(), json!("2s")),
                ("empty".into(), Value::Null),
                ("hosts[0]".into(), json!("a")),
                ("hosts[1]".into(), json!("b")),
                ("server.port".into(), json!(8080)),
            ]
        );
        assert!(from_yaml("e.yml", b"\n").unwrap().is_empty());
        assert!(matches!(
            from_yaml("bad.yml", b"a: [1"),
            Err(ConfigError::Read(_))
        ));
    }

    #[test]
    fn properties_follow_javas_format() {
        let flat = from_properties(
            b"# comment\n! also\nplain=1\nspaced : two words\nblank 3\nlong = a\\\n   b\nescaped\\:key=tab\\there\nunicode=\\u00e9\nempty=\n",
        );
        let pairs: Vec<(&str, &str)> = flat
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("plain", "1"),
                ("spaced", "two words"),
                ("blank", "3"),
                ("long", "ab"),
                ("escaped:key", "tab\there"),
                ("unicode", "é"),
                ("empty", ""),
            ]
        );
        let rendered = to_properties(&flat);
        assert_eq!(from_properties(rendered.as_bytes()), flat, "{rendered}");
    }

    #[test]
    fn flat_keys_nest_back() {
        let flat: Flat = vec![
            ("server.port".into(), json!(8080)),
            ("hosts[0]".into(), json!("a")),
            ("hosts[1]".into(), json!("b")),
            ("routes[0].id".into(), json!("r")),
            ("routes[0].uri".into(), json!("lb://x")),
        ];
        assert_eq!(
            nest(&flat),
            json!({"server": {"port": 8080}, "hosts": ["a", "b"],
                   "routes": [{"id": "r", "uri": "lb://x"}]})
        );
    }
}
