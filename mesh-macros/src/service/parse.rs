//! Reads a `#[mesh::service]` trait into a [`Service`], refusing misuse with errors that
//! point at the offending tokens.

use std::collections::BTreeSet;

use proc_macro2::Span;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType,
    TraitItem, TraitItemFn, Type, spanned::Spanned,
};

/// The whole service.
pub(crate) struct Service {
    pub(crate) name: LitStr,
    pub(crate) methods: Vec<Method>,
}

/// One method: its route and how its arguments bind.
pub(crate) struct Method {
    pub(crate) ident: Ident,
    pub(crate) docs: Vec<Attribute>,
    pub(crate) http: HttpMethod,
    pub(crate) path: LitStr,
    /// The path split into literal text and parameter names, in order.
    pub(crate) segments: Vec<Segment>,
    pub(crate) args: Vec<Arg>,
    pub(crate) ok: Type,
    pub(crate) err: Type,
    pub(crate) idempotent: bool,
    pub(crate) public: bool,
    pub(crate) timeout_ms: Option<u64>,
}

/// A piece of a route path.
pub(crate) enum Segment {
    Literal(String),
    Param(String),
}

/// An argument and where it travels.
pub(crate) struct Arg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    pub(crate) binding: Binding,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    Path,
    Query,
    Body,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    const ALL: [(&'static str, HttpMethod); 5] = [
        ("get", HttpMethod::Get),
        ("post", HttpMethod::Post),
        ("put", HttpMethod::Put),
        ("patch", HttpMethod::Patch),
        ("delete", HttpMethod::Delete),
    ];

    fn of(attribute: &Attribute) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| attribute.path().is_ident(name))
            .map(|(_, method)| *method)
    }

    /// The routing function's name in axum and the method's name in `http`.
    pub(crate) fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Get => ("get", "GET"),
            Self::Post => ("post", "POST"),
            Self::Put => ("put", "PUT"),
            Self::Patch => ("patch", "PATCH"),
            Self::Delete => ("delete", "DELETE"),
        }
    }

    /// Whether HTTP defines the method as idempotent.
    pub(crate) fn is_idempotent(self) -> bool {
        matches!(self, Self::Get | Self::Put | Self::Delete)
    }

    fn takes_body(self) -> bool {
        matches!(self, Self::Post | Self::Put | Self::Patch)
    }
}

/// Reads `name = "..."` from the attribute's arguments.
pub(crate) fn service_name(args: proc_macro2::TokenStream) -> syn::Result<LitStr> {
    let mut name = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error("expected `name = \"service-id\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    name.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "a service needs its ID: #[mesh::service(name = \"inventory-service\")]",
        )
    })
}

/// Reads the trait; `item` is left with the route attributes removed, ready to be emitted.
pub(crate) fn service(name: LitStr, item: &mut ItemTrait) -> syn::Result<Service> {
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a service trait cannot be generic",
        ));
    }
    let mut methods = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut routes = BTreeSet::new();
    for trait_item in &mut item.items {
        let TraitItem::Fn(function) = trait_item else {
            push(
                &mut errors,
                syn::Error::new_spanned(trait_item, "a service trait holds only methods"),
            );
            continue;
        };
        match method(function) {
            Ok(method) => {
                let (_, verb) = method.http.names();
                if !routes.insert((verb, normalized(&method.segments))) {
                    push(
                        &mut errors,
                        syn::Error::new_spanned(
                            &method.path,
                            format!(
                                "another method already serves {verb} {}",
                                method.path.value()
                            ),
                        ),
                    );
                }
                methods.push(method);
            }
            Err(error) => push(&mut errors, error),
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(Service { name, methods }),
    }
}

/// Removes mesh's attributes (routes, `#[query]`, `#[body]`) from every method.
pub(crate) fn strip(item: &mut ItemTrait) {
    for trait_item in &mut item.items {
        if let TraitItem::Fn(function) = trait_item {
            function.attrs.retain(|a| HttpMethod::of(a).is_none());
            for input in &mut function.sig.inputs {
                if let FnArg::Typed(typed) = input {
                    typed
                        .attrs
                        .retain(|a| !a.path().is_ident("query") && !a.path().is_ident("body"));
                }
            }
        }
    }
}

fn push(errors: &mut Option<syn::Error>, error: syn::Error) {
    match errors {
        Some(errors) => errors.combine(error),
        None => *errors = Some(error),
    }
}

/// The path with parameter names erased, to find two methods on one route.
fn normalized(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => text.as_str(),
            Segment::Param(_) => "{}",
        })
        .collect()
}

fn method(function: &mut TraitItemFn) -> syn::Result<Method> {
    let signature = &function.sig;
    if signature.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            signature.fn_token,
            "a service method must be `async fn`",
        ));
    }
    if let Some(body) = &function.default {
        return Err(syn::Error::new_spanned(
            body,
            "a service method has no default body: the server's implementation provides it",
        ));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &signature.generics,
            "a service method cannot be generic",
        ));
    }
    let route_attributes: Vec<&Attribute> = function
        .attrs
        .iter()
        .filter(|a| HttpMethod::of(a).is_some())
        .collect();
    let attribute = match route_attributes.as_slice() {
        [] => {
            return Err(syn::Error::new_spanned(
                &signature.ident,
                "a service method needs a route: #[get(\"/path\")], #[post(..)], #[put(..)], \
                 #[patch(..)] or #[delete(..)]",
            ));
        }
        [one] => *one,
        [_, second, ..] => {
            return Err(syn::Error::new_spanned(
                second,
                "a service method has one route attribute",
            ));
        }
    };
    let http = HttpMethod::of(attribute).expect("filtered on route attributes");
    let route = route(attribute)?;
    receiver(function)?;
    let segments = segments(&route.path)?;
    let (ok, err) = result_types(&function.sig.output)?;
    let args = arguments(function, http, &route.path, &segments)?;
    let docs = function
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    function.attrs.retain(|a| HttpMethod::of(a).is_none());
    Ok(Method {
        ident: function.sig.ident.clone(),
        docs,
        http,
        path: route.path,
        segments,
        args,
        ok,
        err,
        idempotent: route.idempotent || http.is_idempotent(),
        public: route.public,
        timeout_ms: route.timeout_ms,
    })
}

struct Route {
    path: LitStr,
    idempotent: bool,
    public: bool,
    timeout_ms: Option<u64>,
}

/// `#[get("/path", idempotent, public, timeout = "2s")]`.
fn route(attribute: &Attribute) -> syn::Result<Route> {
    attribute.parse_args_with(|input: syn::parse::ParseStream<'_>| {
        let path: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "the route's path comes first: #[get(\"/items/{id}\")]",
            )
        })?;
        let mut route = Route {
            path,
            idempotent: false,
            public: false,
            timeout_ms: None,
        };
        while !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let option: Ident = input.parse()?;
            match option.to_string().as_str() {
                "idempotent" => route.idempotent = true,
                "public" => route.public = true,
                "timeout" => {
                    input.parse::<syn::Token![=]>()?;
                    let value: LitStr = input.parse()?;
                    route.timeout_ms = Some(duration_ms(&value)?);
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        option,
                        "unknown option: expected `idempotent`, `public` or `timeout = \"2s\"`",
                    ));
                }
            }
        }
        Ok(route)
    })
}

/// `"250ms"`, `"2s"`, `"1m"` → milliseconds.
fn duration_ms(value: &LitStr) -> syn::Result<u64> {
    let text = value.value();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| syn::Error::new_spanned(value, "a timeout is a number and a unit: \"2s\""))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                "a timeout's unit is `ms`, `s` or `m`",
            ));
        }
    };
    Ok(number * factor)
}

fn receiver(function: &TraitItemFn) -> syn::Result<()> {
    match function.sig.inputs.first() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() =>
        {
            Ok(())
        }
        Some(FnArg::Receiver(receiver)) => Err(syn::Error::new_spanned(
            receiver,
            "a service method takes `&self`: the server shares one implementation between \
             concurrent requests",
        )),
        _ => Err(syn::Error::new_spanned(
            &function.sig.ident,
            "a service method takes `&self`",
        )),
    }
}

/// `/inventory/{sku}/reserve` → literal `/inventory/`, param `sku`, literal `/reserve`.
fn segments(path: &LitStr) -> syn::Result<Vec<Segment>> {
    let text = path.value();
    if !text.starts_with('/') {
        return Err(syn::Error::new_spanned(
            path,
            "a route's path starts with `/`",
        ));
    }
    let mut segments = Vec::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| syn::Error::new_spanned(path, "an unclosed `{` in the path"))?;
        let name = &rest[open + 1..close];
        if syn::parse_str::<Ident>(name).is_err() {
            return Err(syn::Error::new_spanned(
                path,
                format!("`{{{name}}}` is not a parameter name"),
            ));
        }
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_owned()));
        }
        segments.push(Segment::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

/// `Result<T, E>` → (T, E).
fn result_types(output: &ReturnType) -> syn::Result<(Type, Type)> {
    let wrong = |span: &dyn quote::ToTokens| {
        syn::Error::new_spanned(
            span,
            "a service method returns `Result<T, E>`, with `T` serde-serializable and `E` \
             converting to and from `mesh::error::MeshError`",
        )
    };
    let ReturnType::Type(_, ty) = output else {
        return Err(syn::Error::new(
            output.span(),
            "a service method returns `Result<T, E>`",
        ));
    };
    let Type::Path(path) = ty.as_ref() else {
        return Err(wrong(ty));
    };
    let last = path.path.segments.last().ok_or_else(|| wrong(ty))?;
    if last.ident != "Result" {
        return Err(wrong(ty));
    }
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return Err(wrong(ty));
    };
    let types: Vec<&Type> = arguments
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [ok, err] => Ok(((*ok).clone(), (*err).clone())),
        _ => Err(wrong(ty)),
    }
}

/// Binds each argument: by name to a path parameter, `#[query]` to the query string, and at
/// most one other to the body.
fn arguments(
    function: &mut TraitItemFn,
    http: HttpMethod,
    path: &LitStr,
    segments: &[Segment],
) -> syn::Result<Vec<Arg>> {
    let params: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();
    let (_, verb) = http.names();
    let mut args = Vec::new();
    for input in function.sig.inputs.iter_mut().skip(1) {
        let FnArg::Typed(typed) = input else { continue };
        let Pat::Ident(pattern) = typed.pat.as_ref() else {
            return Err(syn::Error::new_spanned(
                &typed.pat,
                "a service method's arguments are plain names",
            ));
        };
        let ident = pattern.ident.clone();
        let query = typed.attrs.iter().any(|a| a.path().is_ident("query"));
        let body = typed.attrs.iter().any(|a| a.path().is_ident("body"));
        typed
            .attrs
            .retain(|a| !a.path().is_ident("query") && !a.path().is_ident("body"));
        let name = ident.to_string();
        let binding = if query {
            Binding::Query
        } else if params.contains(&name.as_str()) && !body {
            Binding::Path
        } else if http.takes_body() {
            Binding::Body
        } else if body {
            return Err(syn::Error::new_spanned(
                &ident,
                format!("a {verb} request has no body"),
            ));
        } else {
            return Err(syn::Error::new_spanned(
                &ident,
                format!(
                    "`{name}` is used nowhere: it is not a parameter of `{}`, not `#[query]`, \
                     and a {verb} request has no body",
                    path.value()
                ),
            ));
        };
        if binding == Binding::Body && args.iter().any(|a: &Arg| a.binding == Binding::Body) {
            return Err(syn::Error::new_spanned(
                &ident,
                format!(
                    "a request has one body, and another argument is it already; `{name}` is \
                     not a parameter of `{}` (mark it `#[query]`?)",
                    path.value()
                ),
            ));
        }
        if binding == Binding::Query && args.iter().any(|a: &Arg| a.binding == Binding::Query) {
            return Err(syn::Error::new_spanned(
                &ident,
                "one `#[query]` argument holds the whole query string",
            ));
        }
        args.push(Arg {
            ident,
            ty: (*typed.ty).clone(),
            binding,
        });
    }
    for param in params {
        if !args
            .iter()
            .any(|a| a.binding == Binding::Path && a.ident == param)
        {
            return Err(syn::Error::new_spanned(
                path,
                format!("the path parameter `{{{param}}}` has no argument named `{param}`"),
            ));
        }
    }
    Ok(args)
}
