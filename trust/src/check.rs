//! Checking the signatures found for an image against a policy. Nothing is fetched here:
//! keyless bundles are checked against the trusted root alone (certificate chain, SCT,
//! inclusion proof and checkpoint, integrated time within the certificate's validity), so
//! the check runs the same on a connected machine and at an air-gapped site.

use std::time::{SystemTime, UNIX_EPOCH};

use sealift_oci::Digest;
use sigstore_verify::bundle::Error as BundleError;
use sigstore_verify::types::{Bundle, SignatureBytes};
use sigstore_verify::{
    CertificateError, Error as SigError, PublicKeyVerificationPolicy, VerificationPolicy,
};

use crate::error::{Refusal, TrustError};
use crate::found::{Form, Found};
use crate::policy::Policy;
use crate::verdict::{SignatureKind, Signer, Verdict};

impl Policy {
    /// Admit the image `image` (whose manifest bytes are `manifest`) if one of the
    /// signatures `found` satisfies the policy: the first that does gives the verdict;
    /// when none does, every signature's reason is in the error.
    pub fn check(
        &self,
        image: &Digest,
        manifest: &[u8],
        found: &[Found],
    ) -> Result<Verdict, TrustError> {
        if found.is_empty() {
            return Err(TrustError::NoSignature {
                image: image.clone(),
            });
        }
        let mut reasons = Vec::new();
        for f in found {
            let outcome = match &f.layer.form {
                Form::SimpleSigning {
                    signature,
                    certificate,
                } => self.simple_signing(image, &f.bytes, signature.as_deref(), *certificate),
                Form::Bundle => self.bundle(manifest, &f.bytes),
            };
            match outcome {
                Ok((kind, signer, signed_at)) => {
                    return Ok(Verdict {
                        image: image.to_string(),
                        kind,
                        signer,
                        signature: f.at.clone(),
                        signed_at,
                        checked_at: now(),
                    })
                }
                Err(r) => reasons.push((f.at.clone(), r)),
            }
        }
        Err(TrustError::Refused {
            image: image.clone(),
            reasons,
        })
    }

    fn simple_signing(
        &self,
        image: &Digest,
        payload: &[u8],
        signature: Option<&str>,
        certificate: bool,
    ) -> Result<(SignatureKind, Signer, Option<i64>), Refusal> {
        if self.keys.is_empty() {
            return Err(Refusal::NotCovered(if certificate {
                "a legacy keyless cosign signature (certificate in an annotation): sealift \
                 checks keyless signatures only as Sigstore bundles"
                    .into()
            } else {
                "a key signature, and the policy has no --verify-key".into()
            }));
        }
        let signature = signature.ok_or_else(|| {
            Refusal::Malformed("the layer has no dev.cosignproject.cosign/signature".into())
        })?;
        let signature = SignatureBytes::from_base64(signature.trim())
            .map_err(|e| Refusal::Malformed(format!("signature is not base64: {e}")))?;
        // The signature first: nothing in an unsigned payload is worth reading.
        let key = self
            .keys
            .iter()
            .find(|k| {
                k.verification_key()
                    .is_some_and(|v| v.verify(payload, &signature).is_ok())
            })
            .ok_or(Refusal::NoKeyVerifies {
                keys: self.keys.len(),
            })?;
        let signed = payload_digest(payload)?;
        if signed != image.to_string() {
            return Err(Refusal::PayloadDigestMismatch { signed });
        }
        Ok((SignatureKind::CosignKey, key_signer(key), None))
    }

    fn bundle(
        &self,
        manifest: &[u8],
        json: &[u8],
    ) -> Result<(SignatureKind, Signer, Option<i64>), Refusal> {
        let text = std::str::from_utf8(json)
            .map_err(|_| Refusal::Malformed("the bundle is not UTF-8 JSON".into()))?;
        let bundle =
            Bundle::from_json(text).map_err(|e| Refusal::Malformed(format!("bundle: {e}")))?;
        if bundle.signing_certificate().is_some() {
            let Some(keyless) = &self.keyless else {
                return Err(Refusal::NotCovered(
                    "a keyless bundle (Fulcio certificate), and the policy has no \
                     --verify-identity/--verify-issuer"
                        .into(),
                ));
            };
            let policy =
                VerificationPolicy::new(keyless.identity.as_str(), keyless.issuer.as_str());
            let result = keyless
                .verifier
                .verify(manifest, &bundle, &policy)
                .map_err(|e| refusal(e, Some((&keyless.identity, &keyless.issuer))))?;
            let identity = result
                .identity()
                .map(|i| i.as_str().to_string())
                .unwrap_or_else(|| keyless.identity.clone());
            let issuer = result.issuer().unwrap_or(&keyless.issuer).to_string();
            return Ok((
                SignatureKind::BundleKeyless,
                Signer::Identity { identity, issuer },
                result.integrated_time().map(|t| t.as_second()),
            ));
        }
        if self.keys.is_empty() {
            return Err(Refusal::NotCovered(
                "a bundle signed with a key, and the policy has no --verify-key".into(),
            ));
        }
        let mut first_other = None;
        for key in self.keys.iter() {
            // Without a trusted root the key is the trust anchor, as `cosign verify --key
            // --insecure-ignore-tlog`: a key signer may have no public log to write to.
            let mut policy = PublicKeyVerificationPolicy::new(key.der().clone());
            if !self.key_tlog {
                policy = policy.skip_tlog_unsafe();
            }
            match self.key_verifier.verify(manifest, &bundle, &policy) {
                Ok(result) => {
                    return Ok((
                        SignatureKind::BundleKey,
                        key_signer(key),
                        result.integrated_time().map(|t| t.as_second()),
                    ))
                }
                Err(SigError::SignatureInvalid(_)) => {}
                Err(e) => {
                    first_other.get_or_insert(refusal(e, None));
                }
            }
        }
        Err(first_other.unwrap_or(Refusal::NoKeyVerifies {
            keys: self.keys.len(),
        }))
    }
}

fn key_signer(key: &crate::key::PublicKey) -> Signer {
    Signer::Key {
        fingerprint: key.fingerprint().to_string(),
        algorithm: key.algorithm().to_string(),
        file: key.path().display().to_string(),
    }
}

/// `critical.image.docker-manifest-digest` of a simple-signing payload.
fn payload_digest(payload: &[u8]) -> Result<String, Refusal> {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| Refusal::Malformed(format!("simple-signing payload: {e}")))?;
    v.pointer("/critical/image/docker-manifest-digest")
        .and_then(|d| d.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Refusal::Malformed(
                "simple-signing payload has no critical.image.docker-manifest-digest".into(),
            )
        })
}

/// sigstore-verify's reason, in the policy's words.
fn refusal(e: SigError, keyless: Option<(&String, &String)>) -> Refusal {
    let expected = || match keyless {
        Some((identity, issuer)) => format!("{identity} (issuer {issuer})"),
        None => String::new(),
    };
    match e {
        SigError::IdentityMismatch { actual, .. } => Refusal::IdentityMismatch {
            expected: expected(),
            found: actual.map_or("no identity".into(), |a| a.as_str().to_string()),
        },
        SigError::IssuerMismatch { actual, .. } => Refusal::IdentityMismatch {
            expected: expected(),
            found: format!("issuer {}", actual.as_deref().unwrap_or("(none)")),
        },
        SigError::Certificate(
            c @ (CertificateError::Expired { .. } | CertificateError::NotYetValid { .. }),
        ) => Refusal::CertificateExpired(c.to_string()),
        // webpki reports a certificate outside its validity at the verified time as a chain
        // failure (`CertExpired`, `CertNotValidYet`).
        SigError::Certificate(CertificateError::ChainInvalid(d))
            if d.contains("CertExpired") || d.contains("CertNotValidYet") =>
        {
            Refusal::CertificateExpired(d)
        }
        SigError::Certificate(c) => Refusal::UntrustedChain(c.to_string()),
        SigError::TransparencyLog(t) => Refusal::Inclusion(t.to_string()),
        SigError::Timestamp(t) => Refusal::Inclusion(t.to_string()),
        SigError::ArtifactMismatch(d) => Refusal::PayloadDigestMismatch { signed: d },
        SigError::SignatureInvalid(d) => Refusal::BadSignature(d),
        SigError::Bundle(
            b @ (BundleError::MissingInclusionPromise(_)
            | BundleError::MissingInclusionProof(_)
            | BundleError::MissingSigningTimeEvidence
            | BundleError::MissingCheckpoint
            | BundleError::LogIndexOutOfRange { .. }
            | BundleError::CheckpointRootMismatch),
        ) => Refusal::Inclusion(b.to_string()),
        other => Refusal::Malformed(other.to_string()),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
