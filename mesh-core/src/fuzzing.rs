//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`); not an API. Each reads
//! arbitrary bytes as one side of the HTTP/1.1 codec does and must neither panic nor hang.

/// Reads `data` as mesh's own server path reads requests off a connection: pipelined heads
/// and bodies, each offered as a raw request and built into a typed one.
pub fn request(data: &[u8]) {
    crate::http1::request::fuzz_request(data);
}

/// Reads `data` as the client reads an answer, to `GET` and to `HEAD`: interim answers, the
/// head (typed, and as a relay's lines) and the body, however it is framed.
pub fn answer(data: &[u8]) {
    crate::http1::conn::fuzz_answer(data);
}
