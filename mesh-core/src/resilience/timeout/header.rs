use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use http::{HeaderMap, HeaderValue, header::HeaderName};

use super::InvalidDeadline;

/// The header carrying a request's remaining time budget between mesh services.
pub const TIMEOUT_HEADER: HeaderName = HeaderName::from_static("mesh-timeout");

/// gRPC's timeout header, honoured on the server side as well so tonic clients' deadlines hold.
pub const GRPC_TIMEOUT_HEADER: HeaderName = HeaderName::from_static("grpc-timeout");

const MAX_DIGITS: u64 = 99_999_999;

/// Encodes a budget in gRPC's relative format, in the finest unit that fits in eight digits.
/// The value is rounded down, so the next hop never believes it has more time than it does.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::timeout::encode_timeout;
///
/// assert_eq!(encode_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(encode_timeout(Duration::from_secs(600)), "600000m");
/// ```
pub fn encode_timeout(budget: Duration) -> HeaderValue {
    let nanos = budget.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (value, unit) = units
        .iter()
        .map(|&(size, unit)| (nanos / size, unit))
        .find(|&(value, _)| value <= u128::from(MAX_DIGITS))
        .unwrap_or((u128::from(MAX_DIGITS), 'H'));
    HeaderValue::try_from(format!("{value}{unit}")).expect("digits and a unit are a valid header")
}

/// Distinct timeouts whose encoding is kept for the life of the process.
const SHARED_ENCODINGS: usize = 64;

/// [`encode_timeout`], as a value every call can copy for free: the encodings of the first 64
/// distinct timeouts a process configures are kept for its life (a few bytes each), so a copy
/// per call is a pointer copy rather than a reference count shared across threads.
pub(super) fn encode_timeout_shared(budget: Duration) -> HeaderValue {
    static ENCODED: Mutex<Vec<(Duration, &'static str)>> = Mutex::new(Vec::new());
    let mut encoded = ENCODED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&(_, value)) = encoded.iter().find(|(known, _)| *known == budget) {
        return HeaderValue::from_static(value);
    }
    let value = encode_timeout(budget);
    if encoded.len() >= SHARED_ENCODINGS {
        return value;
    }
    let text = value.to_str().expect("an encoded budget is ASCII");
    let kept: &'static str = Box::leak(text.into());
    encoded.push((budget, kept));
    HeaderValue::from_static(kept)
}

/// Decodes a gRPC-format relative timeout.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::timeout::decode_timeout;
///
/// assert_eq!(decode_timeout(b"250m").unwrap(), Duration::from_millis(250));
/// assert!(decode_timeout(b"250").is_err());
/// assert!(decode_timeout(b"123456789S").is_err());
/// ```
pub fn decode_timeout(value: &[u8]) -> Result<Duration, InvalidDeadline> {
    let (&unit, digits) = value
        .split_last()
        .ok_or(InvalidDeadline::new("empty value"))?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidDeadline::new("expected 1 to 8 digits and a unit"));
    }
    let amount = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return Err(InvalidDeadline::new("unit must be one of H, M, S, m, u, n")),
    })
}

/// Reads the budget from the mesh header, falling back to gRPC's.
pub(crate) fn read_budget(headers: &HeaderMap) -> Result<Option<Duration>, InvalidDeadline> {
    headers
        .get(TIMEOUT_HEADER)
        .or_else(|| headers.get(GRPC_TIMEOUT_HEADER))
        .map(|value| decode_timeout(value.as_bytes()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn encoding_round_trips_without_gaining_time(nanos in 0u64..=u64::MAX / 2) {
            let budget = Duration::from_nanos(nanos);
            let value = encode_timeout(budget);
            prop_assert!(value.len() <= 9);
            let decoded = decode_timeout(value.as_bytes()).unwrap();
            prop_assert!(decoded <= budget);
            // The coarsest unit used for a value is at most 1000x its size, so little is lost.
            prop_assert!(budget - decoded <= budget / 1000 + Duration::from_nanos(1));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode_timeout(&bytes);
        }
    }

    #[test]
    fn shared_encodings_match_and_are_kept_once_per_timeout() {
        let budget = Duration::from_millis(1234);
        let first = encode_timeout_shared(budget);
        assert_eq!(first, encode_timeout(budget));
        let again = encode_timeout_shared(budget);
        assert_eq!(
            first.as_bytes().as_ptr(),
            again.as_bytes().as_ptr(),
            "the second layer with this timeout shares the first one's encoding"
        );
        for millis in 0..2 * SHARED_ENCODINGS as u64 {
            let budget = Duration::from_micros(7 + millis);
            assert_eq!(encode_timeout_shared(budget), encode_timeout(budget));
        }
    }

    #[test]
    fn rejects_bad_units_and_lengths() {
        assert!(decode_timeout(b"").is_err());
        assert!(decode_timeout(b"m").is_err());
        assert!(decode_timeout(b"10x").is_err());
        assert!(decode_timeout(b"-1S").is_err());
        assert!(decode_timeout(b"123456789m").is_err());
        assert_eq!(decode_timeout(b"2H").unwrap(), Duration::from_secs(7200));
    }
}
