//! The crypto behind `jsonwebtoken`: HMAC only (HS256, HS384, HS512), on the RustCrypto
//! `hmac` and `sha2` crates PostgreSQL's SCRAM client already brings in.
//!
//! jsonwebtoken 11 takes its algorithms from a process-wide `CryptoProvider`. Its built-in
//! `rust_crypto` provider also compiles RSA, ECDSA and EdDSA, which we never use and which
//! bring in the `rsa` crate (advisory RUSTSEC-2023-0071). So the crate is built without a
//! provider and [`install`] sets this one before any token is signed or checked; every other
//! algorithm is refused as `InvalidAlgorithm`, which the verifier would do anyway (HS256
//! only).

use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::{Sha256, Sha384, Sha512};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes this provider jsonwebtoken's default. Idempotent; call it before the first
/// `encode` or `decode` (jsonwebtoken panics when no provider is installed).
pub fn install() {
    // Err only when a provider is already installed, which can only be this one.
    let _ = PROVIDER.install_default();
}

/// The HMAC key and which SHA-2 it uses.
struct HmacKey {
    algorithm: Algorithm,
    key: Vec<u8>,
}

impl HmacKey {
    fn new(algorithm: Algorithm, family: AlgorithmFamily, key: &[u8]) -> Result<Self, Error> {
        if !matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Ok(HmacKey {
            algorithm,
            key: key.to_vec(),
        })
    }

    fn mac(&self, msg: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key");
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        match self.algorithm {
            Algorithm::HS384 => run::<Hmac<Sha384>>(&self.key, msg),
            Algorithm::HS512 => run::<Hmac<Sha512>>(&self.key, msg),
            _ => run::<Hmac<Sha256>>(&self.key, msg),
        }
    }

    fn verify(&self, msg: &[u8], tag: &[u8]) -> Result<(), signature::Error> {
        fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key");
            mac.update(msg);
            // Constant-time comparison.
            mac.verify_slice(tag).is_ok()
        }
        let ok = match self.algorithm {
            Algorithm::HS384 => run::<Hmac<Sha384>>(&self.key, msg, tag),
            Algorithm::HS512 => run::<Hmac<Sha512>>(&self.key, msg, tag),
            _ => run::<Hmac<Sha256>>(&self.key, msg, tag),
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl Signer<Vec<u8>> for HmacKey {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.mac(msg))
    }
}

impl JwtSigner for HmacKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl Verifier<Vec<u8>> for HmacKey {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        HmacKey::verify(self, msg, signature)
    }
}

impl JwtVerifier for HmacKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Ok(Box::new(HmacKey::new(
        *algorithm,
        key.family(),
        key.as_bytes(),
    )?))
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    Ok(Box::new(HmacKey::new(
        *algorithm,
        key.family(),
        key.try_get_as_bytes()?,
    )?))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::crypto::{sign, verify};
    use jsonwebtoken::jwk::Jwk;

    use super::*;

    /// RFC 7515 appendix A.1: an HS256 JWS and its key, computed by the RFC's authors.
    #[test]
    fn verifies_the_rfc_7515_hs256_example() {
        install();
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#,
        )
        .unwrap();
        let key = DecodingKey::from_jwk(&jwk).unwrap();
        let message = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let good = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let bad = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verify(good, message.as_bytes(), &key, Algorithm::HS256).unwrap());
        assert!(!verify(bad, message.as_bytes(), &key, Algorithm::HS256).unwrap());
        assert!(!verify(good, b"other message", &key, Algorithm::HS256).unwrap());
    }

    #[test]
    fn each_hmac_uses_its_own_hash_and_nothing_else_is_offered() {
        install();
        let enc = EncodingKey::from_secret(b"secret");
        let dec = DecodingKey::from_secret(b"secret");
        for (alg, bytes) in [
            (Algorithm::HS256, 32usize),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            let sig = sign(b"msg", &enc, alg).unwrap();
            // base64url without padding: 4 characters per 3 bytes.
            assert_eq!(sig.len(), (bytes * 4).div_ceil(3), "{alg:?}");
            assert!(verify(&sig, b"msg", &dec, alg).unwrap());
            let other = if alg == Algorithm::HS256 {
                Algorithm::HS512
            } else {
                Algorithm::HS256
            };
            assert!(!verify(&sig, b"msg", &dec, other).unwrap());
        }
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let e = sign(b"msg", &enc, alg).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::InvalidAlgorithm, "{alg:?}");
        }
    }
}
