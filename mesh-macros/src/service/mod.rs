//! `#[mesh::service]`: one trait becomes a server router and a typed client.

mod parse;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{ItemTrait, LitStr, TraitItem};

use self::parse::{Binding, Method, Segment, Service};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut item: ItemTrait = syn::parse2(item)?;
    let service = match parse::service_name(args).and_then(|name| parse::service(name, &mut item)) {
        Ok(service) => service,
        Err(error) => {
            // The trait stays, without mesh's attributes, so the error is the only one.
            parse::strip(&mut item);
            let error = error.to_compile_error();
            return Ok(quote!(#error #item));
        }
    };
    let service_trait = service_trait(&mut item);
    let metadata = metadata(&service);
    let server = server(&item, &service, &metadata);
    let client = client(&item, &service, &metadata);
    Ok(quote! {
        #service_trait
        #server
        #client
    })
}

/// The trait as written, its methods returning `Send` futures so the server can run them.
fn service_trait(item: &mut ItemTrait) -> TokenStream {
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Sync));
    item.supertraits.push(syn::parse_quote!('static));
    for trait_item in &mut item.items {
        if let TraitItem::Fn(function) = trait_item {
            function.sig.asyncness = None;
            let output = match &function.sig.output {
                syn::ReturnType::Type(_, ty) => ty.clone(),
                syn::ReturnType::Default => Box::new(syn::parse_quote!(())),
            };
            function.sig.output = syn::parse_quote! {
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
            };
        }
    }
    quote!(#item)
}

/// The routes, for registration and gateways.
fn metadata(service: &Service) -> TokenStream {
    let name = &service.name;
    let routes = service.methods.iter().map(|method| {
        let (_, verb) = method.http.names();
        let path = &method.path;
        let public = method.public;
        let idempotent = method.idempotent;
        quote! {
            ::mesh::server::RouteMetadata {
                method: #verb,
                path: #path,
                public: #public,
                idempotent: #idempotent,
            }
        }
    });
    quote! {
        ::mesh::server::ServiceMetadata {
            name: #name,
            routes: &[#(#routes),*],
        }
    }
}

fn server(item: &ItemTrait, service: &Service, metadata: &TokenStream) -> TokenStream {
    let vis = &item.vis;
    let trait_ident = &item.ident;
    let server = format_ident!("{}Server", trait_ident);
    let name = &service.name;
    let path_structs = service
        .methods
        .iter()
        .filter_map(|m| path_struct(trait_ident, m));
    let routes = service.methods.iter().map(|m| route(trait_ident, m));
    let doc = format!(
        "Serves [`{trait_ident}`] as the `{}` service: [`into_router`](Self::into_router) \
         gives an axum `Router` with one route per method.",
        name.value()
    );
    quote! {
        #(#path_structs)*

        #[doc = #doc]
        #vis struct #server<S> {
            service: ::std::sync::Arc<S>,
        }

        impl<S> ::core::fmt::Debug for #server<S> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#server)).finish_non_exhaustive()
            }
        }

        impl<S: #trait_ident> #server<S> {
            /// The service's routes, published in its registration.
            pub const METADATA: ::mesh::server::ServiceMetadata = #metadata;

            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self { service: ::std::sync::Arc::new(service) }
            }

            /// The router: each method at its route, JSON in and out, errors as mesh's JSON
            /// error body with the error's status.
            pub fn into_router(self) -> ::mesh::axum::Router {
                let service = self.service;
                ::mesh::axum::Router::new()
                    #(#routes)*
            }
        }

        /// Served with `mesh.server(..)`, the server publishes its routes in the
        /// registration and makes its public routes public.
        impl<S: #trait_ident> ::mesh::server::IntoApplication for #server<S> {
            fn into_application(self) -> ::mesh::server::Application {
                ::mesh::server::Application::described(self.into_router(), Self::METADATA)
            }
        }
    }
}

/// A struct for a method's path parameters, deserialized by axum's `Path`.
fn path_struct(trait_ident: &syn::Ident, method: &Method) -> Option<TokenStream> {
    let fields: Vec<TokenStream> = method
        .args
        .iter()
        .filter(|a| a.binding == Binding::Path)
        .map(|a| {
            let (ident, ty) = (&a.ident, &a.ty);
            quote!(#ident: #ty)
        })
        .collect();
    if fields.is_empty() {
        return None;
    }
    let ident = path_struct_ident(trait_ident, method);
    Some(quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[derive(::mesh::__serde::Deserialize)]
        #[serde(crate = "::mesh::__serde")]
        struct #ident { #(#fields),* }
    })
}

fn path_struct_ident(trait_ident: &syn::Ident, method: &Method) -> syn::Ident {
    format_ident!("__{}_{}_path", trait_ident, method.ident)
}

/// `.route(path, get(handler))` for one method.
fn route(trait_ident: &syn::Ident, method: &Method) -> TokenStream {
    let path = &method.path;
    let (routing, _) = method.http.names();
    let routing = format_ident!("{}", routing);
    let ident = &method.ident;
    let mut extractors = Vec::new();
    let mut bindings = Vec::new();
    if method.args.iter().any(|a| a.binding == Binding::Path) {
        let path_struct = path_struct_ident(trait_ident, method);
        let fields = method
            .args
            .iter()
            .filter(|a| a.binding == Binding::Path)
            .map(|a| &a.ident);
        extractors.push(
            quote!(::mesh::server::extract::Path(__path): ::mesh::server::extract::Path<#path_struct>),
        );
        bindings.push(quote!(let #path_struct { #(#fields),* } = __path;));
    }
    for arg in &method.args {
        let (arg_ident, ty) = (&arg.ident, &arg.ty);
        match arg.binding {
            Binding::Query => extractors.push(
                quote!(::mesh::server::extract::Query(#arg_ident): ::mesh::server::extract::Query<#ty>),
            ),
            Binding::Body | Binding::Path => {}
        }
    }
    // The body extractor goes last, as axum requires.
    for arg in method.args.iter().filter(|a| a.binding == Binding::Body) {
        let (arg_ident, ty) = (&arg.ident, &arg.ty);
        extractors.push(
            quote!(::mesh::server::extract::Json(#arg_ident): ::mesh::server::extract::Json<#ty>),
        );
    }
    let call_args = method.args.iter().map(|a| &a.ident);
    quote! {
        .route(#path, ::mesh::axum::routing::#routing({
            let service = ::std::sync::Arc::clone(&service);
            move |#(#extractors),*| async move {
                #(#bindings)*
                match service.#ident(#(#call_args),*).await {
                    ::core::result::Result::Ok(value) => {
                        ::mesh::axum::response::IntoResponse::into_response(::mesh::axum::Json(value))
                    }
                    ::core::result::Result::Err(error) => {
                        let error: ::mesh::error::MeshError = ::core::convert::Into::into(error);
                        ::mesh::axum::response::IntoResponse::into_response(error)
                    }
                }
            }
        }))
    }
}

fn client(item: &ItemTrait, service: &Service, metadata: &TokenStream) -> TokenStream {
    let vis = &item.vis;
    let trait_ident = &item.ident;
    let client = format_ident!("{}Client", trait_ident);
    let name = &service.name;
    let methods = service.methods.iter().map(client_method);
    let doc = format!(
        "Calls the `{}` service's [`{trait_ident}`] API by service ID, through the whole \
         client stack of a [`MeshClient`](::mesh::MeshClient).",
        name.value()
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #client {
            client: ::mesh::MeshClient,
        }

        impl #client {
            /// The service ID this client calls.
            pub const SERVICE: &'static str = #name;

            /// The service's routes.
            pub const METADATA: ::mesh::server::ServiceMetadata = #metadata;

            /// A client of the service through `mesh`'s discovery and client stack.
            pub fn new(mesh: &::mesh::Mesh) -> Self {
                Self::from_client(mesh.client(#name))
            }

            /// A client over an existing `MeshClient` of the service.
            pub fn from_client(client: ::mesh::MeshClient) -> Self {
                Self { client }
            }

            #(#methods)*
        }
    }
}

fn client_method(method: &Method) -> TokenStream {
    let ident = &method.ident;
    let docs = &method.docs;
    let (ok, err) = (&method.ok, &method.err);
    let (_, verb) = method.http.names();
    let verb = format_ident!("{}", verb);
    let params = method.args.iter().map(|a| {
        let (ident, ty) = (&a.ident, &a.ty);
        quote!(#ident: #ty)
    });
    let build_path = method.segments.iter().map(|segment| match segment {
        Segment::Literal(text) => quote!(__path.push_str(#text);),
        Segment::Param(name) => {
            let ident = format_ident!("{}", name);
            quote!(::mesh::__private::encode_segment(&#ident, &mut __path);)
        }
    });
    let query = method
        .args
        .iter()
        .find(|a| a.binding == Binding::Query)
        .map(|a| {
            let ident = &a.ident;
            quote! {
                if let ::core::result::Result::Err(error) =
                    ::mesh::__private::append_query(&#ident, &mut __path)
                {
                    return ::core::result::Result::Err(::core::convert::From::from(error));
                }
            }
        });
    let body = match method.args.iter().find(|a| a.binding == Binding::Body) {
        Some(arg) => {
            let ident = &arg.ident;
            quote!(::core::option::Option::Some(&#ident))
        }
        None => quote!(::core::option::Option::None::<&()>),
    };
    let idempotent = method.idempotent;
    let timeout = match method.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let capacity = LitStr::new(&method.path.value(), method.path.span())
        .value()
        .len()
        + 16;
    quote! {
        #(#docs)*
        pub async fn #ident(&self, #(#params),*) -> ::core::result::Result<#ok, #err> {
            let mut __path = ::std::string::String::with_capacity(#capacity);
            #(#build_path)*
            #query
            let options = ::mesh::client::CallOptions {
                idempotent: #idempotent,
                timeout: #timeout,
            };
            self.client
                .call(::mesh::__private::Method::#verb, &__path, #body, options)
                .await
                .map_err(::core::convert::From::from)
        }
    }
}
