//! How large an HTTP/1 message may be, one type for both sides: a server reads requests within
//! its [`Limits`] (from the `server` section), a client reads answers within
//! [`Limits::ANSWER`].

/// How large a message may be: its head, its number of header fields, its body.
///
/// ```
/// use mesh_core::http1::Limits;
/// let strict = Limits { head_bytes: 8 * 1024, ..Limits::REQUEST };
/// assert_eq!(strict.fields, Limits::REQUEST.fields);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes a head may take (start line and fields); a request over it is answered
    /// `431`, an answer over it is a transport error.
    pub head_bytes: usize,
    /// The most header fields a head may have; a request over it is answered `431`.
    pub fields: usize,
    /// The most bytes a body may have; a request over it is answered `413`.
    pub body_bytes: usize,
}

impl Limits {
    /// What a server reads of a request unless configured (`server.max_head_bytes`,
    /// `server.max_fields`, `server.body_limit`): 32 KiB heads, 100 fields (hyper's
    /// default), 2 MiB bodies.
    pub const REQUEST: Self = Self {
        head_bytes: 32 * 1024,
        fields: 100,
        body_bytes: 2 * 1024 * 1024,
    };

    /// What a client reads of an answer: 64 KiB heads, 128 fields, 16 MiB bodies read whole
    /// (`clients.<service>.max_response_bytes` changes the last).
    pub const ANSWER: Self = Self {
        head_bytes: 64 * 1024,
        fields: 128,
        body_bytes: 16 * 1024 * 1024,
    };
}

impl Default for Limits {
    /// [`Limits::REQUEST`].
    fn default() -> Self {
        Self::REQUEST
    }
}
