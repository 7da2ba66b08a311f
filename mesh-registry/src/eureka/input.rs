use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use mesh_core::discovery::{Instance, InstanceStatus, ServiceId};
use serde::{Deserialize, Deserializer, de};

use crate::{model::EurekaDetails, registry::LeaseRequest};

/// A registration body as Spring Boot, py-eureka-client and eureka-js-client send it, wrapped
/// in `{"instance": …}` (JSON) or as an `<instance>` document (XML). Unknown fields are ignored,
/// as Eureka does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EurekaInstance {
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    host_name: Option<String>,
    app: String,
    #[serde(default)]
    ip_addr: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    secure_port: Option<Port>,
    #[serde(default)]
    data_center_info: Option<DataCenterInfo>,
    #[serde(default)]
    lease_info: Option<LeaseInfo>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Text>>,
    #[serde(default)]
    home_page_url: Option<String>,
    #[serde(default)]
    status_page_url: Option<String>,
    #[serde(default)]
    health_check_url: Option<String>,
    #[serde(default)]
    secure_health_check_url: Option<String>,
    #[serde(default)]
    vip_address: Option<String>,
    #[serde(default)]
    secure_vip_address: Option<String>,
    #[serde(default)]
    app_group_name: Option<String>,
}

/// `{"$": 8080, "@enabled": "true"}` in JSON, `<port enabled="true">8080</port>` in XML.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Port {
    #[serde(rename = "$", deserialize_with = "flexible")]
    number: u16,
    #[serde(
        rename = "@enabled",
        default = "enabled",
        deserialize_with = "flexible"
    )]
    enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct DataCenterInfo {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseInfo {
    #[serde(default, deserialize_with = "flexible_option")]
    renewal_interval_in_secs: Option<u64>,
    #[serde(default, deserialize_with = "flexible_option")]
    duration_in_secs: Option<u64>,
}

/// A string, number or boolean, kept as text (metadata values arrive as any of them).
#[derive(Debug, Clone)]
struct Text(String);

/// The body could not be read as an Eureka instance.
#[derive(Debug, thiserror::Error)]
#[error("invalid Eureka instance: {0}")]
pub struct ParseError(String);

#[derive(Deserialize)]
struct Wrapped {
    instance: EurekaInstance,
}

fn enabled() -> bool {
    true
}

/// Reads a value given as a JSON number, a JSON string, or XML text.
fn flexible<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = Text::deserialize(deserializer)?;
    text.0.trim().parse().map_err(de::Error::custom)
}

fn flexible_option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    flexible(deserializer).map(Some)
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(String::new()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Reads a registration body: JSON when `content_type` says so or the body starts with `{`,
/// XML otherwise. Returns the instance for the catalogue, the lease it asks for, and the
/// Eureka-only details to return to Eureka clients.
pub fn parse_registration(
    path_app: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Instance, LeaseRequest, EurekaDetails), ParseError> {
    let is_json = content_type.is_some_and(|c| c.contains("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let eureka: EurekaInstance = if is_json {
        serde_json::from_slice::<Wrapped>(body)
            .map(|w| w.instance)
            .map_err(|e| ParseError(e.to_string()))?
    } else {
        let text = std::str::from_utf8(body).map_err(|e| ParseError(e.to_string()))?;
        let value = xml_to_json(text)?;
        serde_json::from_value(value).map_err(|e| ParseError(e.to_string()))?
    };
    eureka.into_registration(path_app)
}

impl EurekaInstance {
    fn into_registration(
        self,
        path_app: &str,
    ) -> Result<(Instance, LeaseRequest, EurekaDetails), ParseError> {
        if !self.app.eq_ignore_ascii_case(path_app) {
            return Err(ParseError(format!(
                "body names app `{}` but the path names `{path_app}`",
                self.app
            )));
        }
        let host = self
            .host_name
            .clone()
            .or_else(|| self.ip_addr.clone())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ParseError("hostName or ipAddr is required".into()))?;
        let plain = self.port.filter(|p| p.enabled);
        let secure = self.secure_port.filter(|p| p.enabled);
        let (port, is_secure) = match (plain, secure) {
            (Some(plain), _) => (plain.number, false),
            (None, Some(secure)) => (secure.number, true),
            (None, None) => return Err(ParseError("no enabled port".into())),
        };
        let status = match self.status.as_deref() {
            Some(text) => InstanceStatus::from_str(text).map_err(|e| ParseError(e.to_string()))?,
            None => InstanceStatus::Up,
        };
        let metadata: BTreeMap<String, String> = self
            .metadata
            .unwrap_or_default()
            .into_iter()
            .filter(|(key, _)| !key.starts_with('@') && !key.starts_with('$'))
            .map(|(key, value)| (key, value.0))
            .collect();
        let service = ServiceId::new(&self.app);
        // Without an instanceId, Eureka identifies an instance by its host name, and clients
        // such as eureka-js-client renew under that name.
        let id = self
            .instance_id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| host.clone());
        let instance = Instance {
            id,
            service,
            host,
            port,
            secure: is_secure,
            zone: metadata.get("zone").cloned(),
            weight: metadata
                .get("weight")
                .and_then(|w| w.parse().ok())
                .unwrap_or(100),
            metadata,
            status,
        };
        let lease = LeaseRequest {
            renewal_interval: self
                .lease_info
                .and_then(|l| l.renewal_interval_in_secs)
                .map(Duration::from_secs),
            duration: self
                .lease_info
                .and_then(|l| l.duration_in_secs)
                .map(Duration::from_secs),
        };
        let details = EurekaDetails {
            app_name: Some(self.app.to_ascii_uppercase()),
            ip_addr: self.ip_addr,
            vip_address: self.vip_address,
            secure_vip_address: self.secure_vip_address,
            home_page_url: self.home_page_url,
            status_page_url: self.status_page_url,
            health_check_url: self.health_check_url,
            secure_health_check_url: self.secure_health_check_url,
            app_group_name: self.app_group_name,
            data_center: self.data_center_info.and_then(|d| d.name),
            insecure_port: self.port.map(|p| (p.number, p.enabled)),
            secure_port: self.secure_port.map(|p| (p.number, p.enabled)),
        };
        Ok((instance, lease, details))
    }
}

/// Reads Eureka's XML as the JSON it corresponds to: attributes become `@name` keys, the text
/// of an element with attributes becomes `$`, and an element with only text becomes a string
/// (so `<port enabled="true">8080</port>` reads as `{"$": "8080", "@enabled": "true"}`).
fn xml_to_json(xml: &str) -> Result<serde_json::Value, ParseError> {
    use quick_xml::events::Event;
    use serde_json::{Map, Value};

    /// An element being read: its attributes and children, and its text.
    struct Open {
        name: String,
        fields: Map<String, Value>,
        text: String,
    }

    fn close(open: Open) -> Value {
        if open.fields.is_empty() {
            return Value::String(open.text.trim().to_string());
        }
        let mut fields = open.fields;
        if !open.text.trim().is_empty() {
            fields.insert("$".into(), Value::String(open.text.trim().to_string()));
        }
        Value::Object(fields)
    }

    fn open(start: &quick_xml::events::BytesStart<'_>) -> Result<Open, ParseError> {
        let mut fields = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| ParseError(e.to_string()))?;
            let key = attribute.key.as_ref().to_string();
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| ParseError(e.to_string()))?;
            fields.insert(format!("@{key}"), Value::String(value.into_owned()));
        }
        Ok(Open {
            name: start.name().as_ref().to_string(),
            fields,
            text: String::new(),
        })
    }

    /// Nesting deeper than any InstanceInfo is refused, bounding the work on hostile input.
    const MAX_DEPTH: usize = 16;

    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Open> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| ParseError(e.to_string()))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError("XML nested too deeply".into()));
                }
                stack.push(open(&start)?);
            }
            Event::Empty(start) => {
                let element = open(&start)?;
                let name = element.name.clone();
                let value = close(element);
                match stack.last_mut() {
                    Some(parent) => {
                        parent.fields.insert(name, value);
                    }
                    None => return Ok(serde_json::json!({ name: value })),
                }
            }
            Event::Text(text) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                        .ok_or_else(|| ParseError(format!("unknown entity `&{};`", &*reference)))?
                        .to_string(),
                    Err(e) => return Err(ParseError(e.to_string())),
                };
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| ParseError("unbalanced XML".into()))?;
                let name = element.name.clone();
                let value = close(element);
                match stack.last_mut() {
                    Some(parent) => {
                        parent.fields.insert(name, value);
                    }
                    None => return Ok(value),
                }
            }
            Event::Eof => return Err(ParseError("XML document ends early".into())),
            _ => {}
        }
    }
}
