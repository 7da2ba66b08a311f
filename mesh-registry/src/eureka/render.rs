use std::{collections::BTreeMap, fmt::Write};

use quick_xml::escape::escape;
use serde_json::{Value, json};

use crate::model::{Action, Registration};

const DEFAULT_DATA_CENTER_CLASS: &str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";
const AMAZON_DATA_CENTER_CLASS: &str = "com.netflix.appinfo.AmazonInfo";
const EMPTY_METADATA_CLASS: &str = "java.util.Collections$EmptyMap";

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/xml`, Eureka's default.
    Xml,
}

impl Format {
    /// JSON when the `Accept` header names it, XML otherwise (as Eureka answers).
    pub fn from_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("json")) {
            Self::Json
        } else {
            Self::Xml
        }
    }

    /// The `Content-Type` of the representation.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Xml => "application/xml",
        }
    }
}

/// Eureka's reconcile hash code: each status with its count, sorted by status,
/// as in `DOWN_1_UP_3_`. Delta-fetching clients compare it with their own.
pub fn apps_hashcode<'a>(registrations: impl IntoIterator<Item = &'a Registration>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for registration in registrations {
        *counts.entry(registration.status().as_str()).or_default() += 1;
    }
    counts
        .iter()
        .fold(String::new(), |mut code, (status, count)| {
            let _ = write!(code, "{status}_{count}_");
            code
        })
}

/// `GET /eureka/apps` and `/eureka/apps/delta`: `entries` grouped by application.
pub fn render_applications(
    entries: &[(&Registration, Action)],
    version: u64,
    hashcode: &str,
    format: Format,
) -> String {
    let mut apps: BTreeMap<String, Vec<(&Registration, Action)>> = BTreeMap::new();
    for &(registration, action) in entries {
        apps.entry(app_name(registration))
            .or_default()
            .push((registration, action));
    }
    match format {
        Format::Json => {
            // Written instance by instance: no tree of the whole catalogue is built.
            let mut out = Vec::new();
            out.extend_from_slice(b"{\"applications\":{\"versions__delta\":");
            write_json(&mut out, &version.to_string());
            out.extend_from_slice(b",\"apps__hashcode\":");
            write_json(&mut out, hashcode);
            out.extend_from_slice(b",\"application\":[");
            for (i, (name, instances)) in apps.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_application_json(&mut out, name, instances);
            }
            out.extend_from_slice(b"]}}");
            // serde_json writes UTF-8 only.
            String::from_utf8(out).unwrap_or_default()
        }
        Format::Xml => {
            let mut xml = String::from("<applications>");
            let _ = write!(
                xml,
                "<versions__delta>{version}</versions__delta><apps__hashcode>{}</apps__hashcode>",
                escape(hashcode)
            );
            for (name, instances) in &apps {
                application_xml(name, instances, &mut xml);
            }
            xml.push_str("</applications>");
            xml
        }
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Writing to a Vec fails only on a map with non-string keys, which none of these has.
    let _ = serde_json::to_writer(out, value);
}

/// `GET /eureka/apps/{APP}`.
pub fn render_application(name: &str, registrations: &[&Registration], format: Format) -> String {
    let entries: Vec<_> = registrations.iter().map(|r| (*r, Action::Added)).collect();
    let name = name.to_ascii_uppercase();
    match format {
        Format::Json => {
            let mut out = b"{\"application\":".to_vec();
            write_application_json(&mut out, &name, &entries);
            out.push(b'}');
            String::from_utf8(out).unwrap_or_default()
        }
        Format::Xml => {
            let mut xml = String::new();
            application_xml(&name, &entries, &mut xml);
            xml
        }
    }
}

/// `GET /eureka/apps/{APP}/{ID}`.
pub fn render_instance(registration: &Registration, format: Format) -> String {
    match format {
        Format::Json => json!({"instance": instance_json(registration, Action::Added)}).to_string(),
        Format::Xml => {
            let mut xml = String::new();
            instance_xml(registration, Action::Added, &mut xml);
            xml
        }
    }
}

fn app_name(registration: &Registration) -> String {
    registration
        .eureka
        .app_name
        .clone()
        .unwrap_or_else(|| registration.service().as_str().to_ascii_uppercase())
}

/// One application's JSON, written instance by instance.
fn write_application_json(out: &mut Vec<u8>, name: &str, instances: &[(&Registration, Action)]) {
    out.extend_from_slice(b"{\"name\":");
    write_json(out, name);
    out.extend_from_slice(b",\"instance\":[");
    for (i, (registration, action)) in instances.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, &instance_json(registration, *action));
    }
    out.extend_from_slice(b"]}");
}

fn application_xml(name: &str, instances: &[(&Registration, Action)], xml: &mut String) {
    let _ = write!(xml, "<application><name>{}</name>", escape(name));
    for (registration, action) in instances {
        instance_xml(registration, *action, xml);
    }
    xml.push_str("</application>");
}

/// The fields of one instance, shared by both formats.
struct View<'a> {
    app: String,
    ip: String,
    port: (u16, bool),
    secure_port: (u16, bool),
    data_center: &'a str,
    home_page: String,
    status_page: String,
    health_check: String,
    vip: String,
    secure_vip: String,
    overridden: &'static str,
}

impl<'a> View<'a> {
    fn new(registration: &'a Registration) -> Self {
        let instance = &registration.instance;
        let eureka = &registration.eureka;
        let (port, secure_port) = if instance.secure {
            (
                eureka.insecure_port.unwrap_or((80, false)),
                (instance.port, true),
            )
        } else {
            (
                (instance.port, true),
                eureka.secure_port.unwrap_or((443, false)),
            )
        };
        let scheme = if instance.secure { "https" } else { "http" };
        let base = format!("{scheme}://{}:{}", instance.host, instance.port);
        let vip = eureka
            .vip_address
            .clone()
            .unwrap_or_else(|| instance.service.to_string());
        Self {
            app: app_name(registration),
            ip: eureka
                .ip_addr
                .clone()
                .unwrap_or_else(|| instance.host.clone()),
            port,
            secure_port,
            data_center: eureka.data_center.as_deref().unwrap_or("MyOwn"),
            home_page: eureka
                .home_page_url
                .clone()
                .unwrap_or_else(|| format!("{base}/")),
            status_page: eureka
                .status_page_url
                .clone()
                .unwrap_or_else(|| format!("{base}/health")),
            health_check: eureka
                .health_check_url
                .clone()
                .unwrap_or_else(|| format!("{base}/health")),
            secure_vip: eureka
                .secure_vip_address
                .clone()
                .unwrap_or_else(|| vip.clone()),
            vip,
            overridden: registration
                .overridden_status
                .map_or("UNKNOWN", |status| status.as_str()),
        }
    }

    fn data_center_class(&self) -> &'static str {
        if self.data_center == "Amazon" {
            AMAZON_DATA_CENTER_CLASS
        } else {
            DEFAULT_DATA_CENTER_CLASS
        }
    }
}

fn instance_json(registration: &Registration, action: Action) -> Value {
    let view = View::new(registration);
    let instance = &registration.instance;
    let lease = &registration.lease;
    let metadata = if instance.metadata.is_empty() {
        json!({"@class": EMPTY_METADATA_CLASS})
    } else {
        json!(instance.metadata)
    };
    let mut value = json!({
        "instanceId": instance.id,
        "hostName": instance.host,
        "app": view.app,
        "ipAddr": view.ip,
        "status": registration.status().as_str(),
        "overriddenStatus": view.overridden,
        "port": {"$": view.port.0, "@enabled": view.port.1.to_string()},
        "securePort": {"$": view.secure_port.0, "@enabled": view.secure_port.1.to_string()},
        "countryId": 1,
        "dataCenterInfo": {"@class": view.data_center_class(), "name": view.data_center},
        "leaseInfo": {
            "renewalIntervalInSecs": lease.renewal_interval.as_secs(),
            "durationInSecs": lease.duration.as_secs(),
            "registrationTimestamp": lease.registered_ms,
            "lastRenewalTimestamp": lease.last_renewal_ms,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": lease.service_up_ms,
        },
        "metadata": metadata,
        "homePageUrl": view.home_page,
        "statusPageUrl": view.status_page,
        "healthCheckUrl": view.health_check,
        "vipAddress": view.vip,
        "secureVipAddress": view.secure_vip,
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": registration.last_updated_ms.to_string(),
        "lastDirtyTimestamp": registration.last_dirty_ms.to_string(),
        "actionType": action_name(action),
    });
    if let Some(group) = &registration.eureka.app_group_name {
        value["appGroupName"] = json!(group);
    }
    value
}

fn instance_xml(registration: &Registration, action: Action, xml: &mut String) {
    let view = View::new(registration);
    let instance = &registration.instance;
    let lease = &registration.lease;
    let element = |xml: &mut String, name: &str, value: &str| {
        let _ = write!(xml, "<{name}>{}</{name}>", escape(value));
    };
    xml.push_str("<instance>");
    element(xml, "instanceId", &instance.id);
    element(xml, "hostName", &instance.host);
    element(xml, "app", &view.app);
    element(xml, "ipAddr", &view.ip);
    element(xml, "status", registration.status().as_str());
    element(xml, "overriddenstatus", view.overridden);
    let _ = write!(
        xml,
        "<port enabled=\"{}\">{}</port><securePort enabled=\"{}\">{}</securePort>",
        view.port.1, view.port.0, view.secure_port.1, view.secure_port.0
    );
    element(xml, "countryId", "1");
    let _ = write!(
        xml,
        "<dataCenterInfo class=\"{}\"><name>{}</name></dataCenterInfo>",
        escape(view.data_center_class()),
        escape(view.data_center)
    );
    let _ = write!(
        xml,
        "<leaseInfo><renewalIntervalInSecs>{}</renewalIntervalInSecs><durationInSecs>{}</durationInSecs>\
         <registrationTimestamp>{}</registrationTimestamp><lastRenewalTimestamp>{}</lastRenewalTimestamp>\
         <evictionTimestamp>0</evictionTimestamp><serviceUpTimestamp>{}</serviceUpTimestamp></leaseInfo>",
        lease.renewal_interval.as_secs(),
        lease.duration.as_secs(),
        lease.registered_ms,
        lease.last_renewal_ms,
        lease.service_up_ms
    );
    let keys: Vec<_> = instance
        .metadata
        .iter()
        .filter(|(key, _)| is_xml_name(key))
        .collect();
    if keys.is_empty() {
        let _ = write!(xml, "<metadata class=\"{EMPTY_METADATA_CLASS}\"/>");
    } else {
        xml.push_str("<metadata>");
        for (key, value) in keys {
            element(xml, key, value);
        }
        xml.push_str("</metadata>");
    }
    element(xml, "homePageUrl", &view.home_page);
    element(xml, "statusPageUrl", &view.status_page);
    element(xml, "healthCheckUrl", &view.health_check);
    element(xml, "vipAddress", &view.vip);
    element(xml, "secureVipAddress", &view.secure_vip);
    if let Some(group) = &registration.eureka.app_group_name {
        element(xml, "appGroupName", group);
    }
    element(xml, "isCoordinatingDiscoveryServer", "false");
    element(
        xml,
        "lastUpdatedTimestamp",
        &registration.last_updated_ms.to_string(),
    );
    element(
        xml,
        "lastDirtyTimestamp",
        &registration.last_dirty_ms.to_string(),
    );
    element(xml, "actionType", action_name(action));
    xml.push_str("</instance>");
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Added => "ADDED",
        Action::Modified => "MODIFIED",
        Action::Deleted => "DELETED",
    }
}

/// Whether `name` can be an XML element name (metadata keys become elements).
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}
