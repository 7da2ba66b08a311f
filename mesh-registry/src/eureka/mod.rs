//! Eureka's wire format: the `InstanceInfo` clients register, and the registry as Eureka
//! renders it, in JSON and in XML.

mod input;
mod render;

pub use self::{
    input::{EurekaInstance, ParseError, parse_registration},
    render::{Format, apps_hashcode, render_application, render_applications, render_instance},
};
