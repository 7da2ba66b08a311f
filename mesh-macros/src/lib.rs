//! Procedural macros of mesh, used through the `mesh` facade.
//!
//! - `#[derive(EventType)]` declares an event payload's CloudEvents type, which is also its
//!   routing key on the bus: `#[event(type = "order.placed")]`.
//! - `#[service(name = "...")]` turns one trait into a server router and a typed client.
//!
//! The generated code names `::mesh::…` paths only, so it works in any crate depending on
//! `mesh`.

mod service;

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, LitStr, parse_macro_input};

/// Turns a trait into a service contract: the trait (its methods returning `Send` futures),
/// `{Trait}Server` (an axum router over an implementation) and `{Trait}Client` (a typed client
/// calling the service by its ID through the mesh client stack).
///
/// ```ignore
/// #[mesh::service(name = "inventory-service")]
/// pub trait Inventory {
///     /// The stock of one SKU.
///     #[get("/inventory/{sku}")]
///     async fn stock(&self, sku: String) -> Result<Stock, MeshError>;
///
///     #[post("/inventory/{sku}/reservations", idempotent, timeout = "2s")]
///     async fn reserve(&self, sku: String, #[query] hold: Hold, body: Reservation) -> Result<Reserved, MeshError>;
/// }
/// ```
///
/// Arguments bind by name to `{path}` parameters, `#[query]` to the query string, and one
/// other argument (or the one marked `#[body]`) to the JSON body. Route options:
/// `idempotent` (a POST or PATCH may be retried), `public` (no token needed) and
/// `timeout = "2s"`. The mesh book's `docs/service-macro.md` has the full reference.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    match service::expand(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// Implements `mesh::bus::EventType` for a payload type.
///
/// ```ignore
/// #[derive(serde::Serialize, serde::Deserialize, mesh::EventType)]
/// #[event(type = "order.placed")]
/// struct OrderPlaced { order_id: u64 }
/// ```
///
/// The type is required and must be dotted lower-case words (`client.created`), since it is
/// the routing key topic patterns match.
#[proc_macro_derive(EventType, attributes(event))]
pub fn derive_event_type(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match event_type(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn event_type(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let mut event_type: Option<LitStr> = None;
    for attribute in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        attribute.parse_nested_meta(|meta| {
            if meta.path.is_ident("type") {
                event_type = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `type = \"…\"`"))
            }
        })?;
    }
    let event_type = event_type.ok_or_else(|| {
        syn::Error::new_spanned(
            &input.ident,
            "an event needs its type: #[event(type = \"order.placed\")]",
        )
    })?;
    let value = event_type.value();
    let valid_word = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    if !value.split('.').all(valid_word) {
        return Err(syn::Error::new_spanned(
            &event_type,
            "an event type is dotted lower-case words, such as `order.placed`",
        ));
    }
    let name = &input.ident;
    // A generic payload is an event when its parameters make it one.
    let mut generics = input.generics.clone();
    generics
        .make_where_clause()
        .predicates
        .push(syn::parse_quote! {
            Self: ::mesh::__serde::Serialize + ::mesh::__serde::de::DeserializeOwned
        });
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::mesh::bus::EventType for #name #type_generics #where_clause {
            const TYPE: &'static str = #event_type;
        }
    })
}
