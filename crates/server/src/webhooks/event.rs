//! What events say: the notices handlers make, and the events and envelopes built from them
//! in Distribution's notification format (with Wharf's additions to the target).

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use wharf_oci::{ArtifactKind, Digest};

use super::Action;

/// What a handler did, for the events it makes.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub action: Action,
    pub repository: String,
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub tag: Option<String>,
    pub kind: Option<ArtifactKind>,
    /// For a tag move, the manifest it named before.
    pub previous: Option<Digest>,
    /// For an attachment, what it is attached to.
    pub subject: Option<Digest>,
}

impl Notice {
    pub fn new(action: Action, repository: &str) -> Notice {
        Notice {
            action,
            repository: repository.to_string(),
            digest: None,
            media_type: None,
            size: None,
            tag: None,
            kind: None,
            previous: None,
            subject: None,
        }
    }
}

/// The notices of one response.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notices(pub Vec<Notice>);

/// The notices a stored manifest makes: its push; the tag's move, when it moved; and its
/// attachment, when it is a signature or an attestation of a subject (named as a referrer,
/// or by cosign's `sha256-<hex>.sig` / `.att` tag).
pub(crate) fn manifest_stored(
    repository: &str,
    tag: Option<&str>,
    put: &wharf_store::ManifestPut,
) -> Notices {
    let mut push = Notice::new(Action::Push, repository);
    push.digest = Some(put.digest.clone());
    push.media_type = Some(put.media_type.clone());
    push.size = Some(put.size);
    push.tag = tag.map(str::to_string);
    push.kind = Some(put.kind);
    let mut out = vec![push.clone()];
    if let Some(previous) = &put.moved_from {
        out.push(Notice {
            action: Action::Tag,
            previous: Some(previous.clone()),
            ..push.clone()
        });
    }
    if matches!(
        put.kind,
        ArtifactKind::Signature | ArtifactKind::Attestation
    ) {
        let subject = put.subject.clone().or_else(|| tag.and_then(cosign_subject));
        if subject.is_some() {
            out.push(Notice {
                action: Action::Attach,
                subject,
                ..push
            });
        }
    }
    Notices(out)
}

/// The subject a cosign tag (`sha256-<hex>.sig`, `.att`) names.
fn cosign_subject(tag: &str) -> Option<Digest> {
    let stem = tag
        .strip_suffix(".sig")
        .or_else(|| tag.strip_suffix(".att"))?;
    let (alg, hex) = stem.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

/// The actor of the events a garbage collection pass makes (retention and collection).
pub const GC_ACTOR: &str = "wharf-gc";

/// The request an event came from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestRecord {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub method: String,
    pub useragent: String,
}

impl RequestRecord {
    pub fn of(req: &axum::extract::Request, id: &str) -> RequestRecord {
        let header = |h: axum::http::HeaderName| {
            req.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        RequestRecord {
            id: id.to_string(),
            addr: req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string()),
            host: header(axum::http::header::HOST),
            method: req.method().to_string(),
            useragent: header(axum::http::header::USER_AGENT).unwrap_or_default(),
        }
    }
}

/// The envelope of `events`, each already JSON.
pub(super) fn envelope(events: &[Arc<Vec<u8>>]) -> bytes::Bytes {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 12);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"]}");
    body.into()
}

#[derive(Debug, Serialize)]
pub(super) struct Event {
    id: String,
    timestamp: String,
    action: Action,
    target: Target,
    request: RequestRecord,
    actor: Actor,
    source: Source,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The same as `size`, as Distribution also sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    /// Wharf's additions: the artifact kind, the digest a moved tag named before, and the
    /// subject of an attachment.
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_digest: Option<String>,
}

#[derive(Debug, Serialize)]
struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Source {
    pub(super) addr: String,
    #[serde(rename = "instanceID")]
    pub(super) instance_id: String,
}

impl Event {
    /// The event of `n`, made by `request` (as `actor`), as this replica (`source`) names it.
    pub(super) fn of(
        n: &Notice,
        request: &RequestRecord,
        actor: Option<&str>,
        scheme: &str,
        source: &Source,
    ) -> Event {
        let url = match (&request.host, &n.digest) {
            (Some(host), Some(d)) => Some(format!(
                "{}://{host}/v2/{}/manifests/{d}",
                scheme, n.repository
            )),
            _ => None,
        };
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
            action: n.action,
            target: Target {
                media_type: n.media_type.clone(),
                size: n.size,
                digest: n.digest.as_ref().map(Digest::to_string),
                length: n.size,
                repository: n.repository.clone(),
                url,
                tag: n.tag.clone(),
                artifact_kind: n.kind.map(ArtifactKind::as_str),
                previous_digest: n.previous.as_ref().map(Digest::to_string),
                subject_digest: n.subject.as_ref().map(Digest::to_string),
            },
            request: request.clone(),
            actor: Actor {
                name: actor.map(str::to_string),
            },
            source: source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(
        kind: ArtifactKind,
        subject: Option<Digest>,
        moved: Option<Digest>,
    ) -> wharf_store::ManifestPut {
        wharf_store::ManifestPut {
            digest: Digest::sha256_of(b"m"),
            subject,
            kind,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            moved_from: moved,
        }
    }

    fn actions(n: &Notices) -> Vec<Action> {
        n.0.iter().map(|n| n.action).collect()
    }

    #[test]
    fn a_stored_manifest_makes_a_push_and_what_else_happened() {
        let old = Digest::sha256_of(b"old");
        let n = manifest_stored("r", Some("v1"), &put(ArtifactKind::Image, None, None));
        assert_eq!(actions(&n), [Action::Push]);
        let n = manifest_stored(
            "r",
            Some("v1"),
            &put(ArtifactKind::Image, None, Some(old.clone())),
        );
        assert_eq!(actions(&n), [Action::Push, Action::Tag]);
        assert_eq!(n.0[1].previous, Some(old));
        let subject = Digest::sha256_of(b"subject");
        let n = manifest_stored(
            "r",
            None,
            &put(ArtifactKind::Signature, Some(subject.clone()), None),
        );
        assert_eq!(actions(&n), [Action::Push, Action::Attach]);
        assert_eq!(n.0[1].subject, Some(subject.clone()));
        // cosign's tag scheme names the subject
        let tag = format!("sha256-{}.sig", subject.hex());
        let n = manifest_stored("r", Some(&tag), &put(ArtifactKind::Signature, None, None));
        assert_eq!(n.0[1].subject, Some(subject));
        // an SBOM is no signature; a signature of nothing attaches to nothing
        let n = manifest_stored(
            "r",
            None,
            &put(ArtifactKind::Sbom, Some(Digest::sha256_of(b"s")), None),
        );
        assert_eq!(actions(&n), [Action::Push]);
        let n = manifest_stored(
            "r",
            Some("x.sig"),
            &put(ArtifactKind::Signature, None, None),
        );
        assert_eq!(actions(&n), [Action::Push]);
    }

    #[test]
    fn waiting_events_share_an_envelope() {
        let one = Arc::new(br#"{"action":"push"}"#.to_vec());
        let two = Arc::new(br#"{"action":"delete"}"#.to_vec());
        let body = envelope(&[one.clone(), two]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["events"][0]["action"], "push");
        assert_eq!(v["events"][1]["action"], "delete");
        let v: serde_json::Value = serde_json::from_slice(&envelope(&[one])).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
    }
}
