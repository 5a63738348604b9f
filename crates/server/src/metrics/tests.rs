//! Unit tests of the metrics registry: names, labels, caps.

use super::*;

#[test]
fn repositories_past_the_cap_share_one_label() {
    let labels = RepositoryLabels::new(2);
    assert_eq!(labels.label("a"), "a");
    assert_eq!(labels.label("b"), "b");
    assert_eq!(labels.label("c"), "_other");
    assert_eq!(labels.label("a"), "a", "a repository seen stays named");
}

#[test]
fn series_stay_bounded_whatever_the_requests() {
    let m = Metrics::new(MetricsOptions {
        max_repositories: 3,
        ..MetricsOptions::default()
    });
    for i in 0..200 {
        let method = Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::BAD_REQUEST;
        m.record(
            &method,
            "manifest",
            Some(&format!("repo{i}")),
            &mut r,
            Instant::now(),
        );
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_FOUND;
        m.record(
            &Method::PUT,
            "manifest",
            Some(&format!("repo{i}")),
            &mut r,
            Instant::now(),
        );
    }
    // 2 request series, 2 latency series, 4 failure series (3 named and _other), the
    // 3 storage gauges, and the 7 scrub and 9 collection series that exist from the start.
    assert_eq!(m.series(), 2 + 2 + 4 + 3 + 7 + 9);
}

#[test]
fn pushes_count_by_outcome_and_challenges_do_not() {
    let m = Metrics::new(MetricsOptions::default());
    let put = |status: StatusCode, kind: Option<&'static str>| {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        if let Some(k) = kind {
            r.extensions_mut().insert(PushedKind(k));
        }
        m.record(
            &Method::PUT,
            "manifest",
            Some("app"),
            &mut r,
            Instant::now(),
        );
    };
    put(StatusCode::CREATED, Some("helm-chart"));
    put(StatusCode::UNAUTHORIZED, None);
    put(StatusCode::BAD_REQUEST, Some("image"));
    put(StatusCode::BAD_REQUEST, None);
    let value = |c: &IntCounterVec, l: &[&str]| c.with_label_values(l).get();
    assert_eq!(value(&m.push_success, &["app", "helm-chart"]), 1);
    assert_eq!(value(&m.push_failure, &["app", "image"]), 1);
    assert_eq!(value(&m.push_failure, &["app", "unknown"]), 1);
}

#[test]
fn the_text_format_has_the_dashboard_names() {
    let m = Metrics::new(MetricsOptions {
        storage_limit_bytes: Some(1000),
        ..MetricsOptions::default()
    });
    m.verified("app", None);
    m.verified("app", Some("NoMatchingSignatures"));
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&m.registry.gather(), &mut out)
        .unwrap();
    for line in [
        "cosign_verify_total{error_code=\"none\",repository=\"app\"} 1",
        "cosign_verify_total{error_code=\"NoMatchingSignatures\",repository=\"app\"} 1",
        "cosign_verify_failure_total{error_code=\"NoMatchingSignatures\",repository=\"app\"} 1",
        "registry_storage_limit_bytes 1000",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
    }
}
