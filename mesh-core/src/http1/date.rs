//! The `Date` field's value, formatted once per second per thread.

use std::{cell::RefCell, time::SystemTime};

thread_local! {
    /// The `Date` value of the current second, formatted once per second per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `with` on the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn now_http_date(with: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(cached, date)| {
        if *cached != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == date.len() {
                date.copy_from_slice(text.as_bytes());
                *cached = second;
            } else {
                return with(text.as_bytes());
            }
        }
        with(date)
    })
}
