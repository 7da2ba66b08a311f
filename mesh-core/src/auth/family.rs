//! Key families: which algorithms one key may verify, so that a token cannot choose an
//! algorithm of another family (the key-confusion attack).

use jsonwebtoken::Algorithm;

/// A key family: the algorithms one key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    /// The family of `algorithm`; `None` for algorithms this version does not know.
    pub(super) fn of(algorithm: Algorithm) -> Option<Self> {
        use Algorithm::*;
        Some(match algorithm {
            HS256 | HS384 | HS512 => Self::Hmac,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Self::Rsa,
            ES256 | ES384 => Self::Ec,
            EdDSA => Self::Ed,
            _ => return None,
        })
    }

    pub(super) fn algorithms(self) -> Vec<Algorithm> {
        use Algorithm::*;
        match self {
            Self::Hmac => vec![HS256, HS384, HS512],
            Self::Rsa => vec![RS256, RS384, RS512, PS256, PS384, PS512],
            Self::Ec => vec![ES256, ES384],
            Self::Ed => vec![EdDSA],
        }
    }
}
