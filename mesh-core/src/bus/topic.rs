/// Whether a routing key matches an AMQP topic pattern: words separated by dots, `*` matching
/// exactly one word and `#` zero or more.
///
/// ```
/// use mesh_core::bus::topic_matches;
/// assert!(topic_matches("client.*", "client.created"));
/// assert!(!topic_matches("client.*", "client.created.v2"));
/// assert!(topic_matches("order.#", "order.placed.eu"));
/// assert!(topic_matches("#", "anything.at.all"));
/// ```
pub fn matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.first(), key.first()) {
            (None, None) => true,
            (Some(&"#"), _) => {
                go(&pattern[1..], key) || (!key.is_empty() && go(pattern, &key[1..]))
            }
            (Some(&"*"), Some(_)) => go(&pattern[1..], &key[1..]),
            (Some(word), Some(k)) if word == k => go(&pattern[1..], &key[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn topic_patterns_match_as_in_rabbitmq() {
        assert!(matches("goal.updated", "goal.updated"));
        assert!(!matches("goal.updated", "goal.created"));
        assert!(matches("*.created", "client.created"));
        assert!(matches("order.#", "order"));
        assert!(matches("#.eu", "order.placed.eu"));
        assert!(!matches("*", "a.b"));
    }
}
