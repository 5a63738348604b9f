//! What recording one request in the metrics costs, in nanoseconds of one core: the hot
//! path's own share, too small for a whole-server comparison on a noisy machine to resolve.
//! `bench/run --ops` runs it (`cargo bench -p wharf-server --bench metrics`) and sets it
//! against the CPU a whole manifest GET and PUT take. Prints one JSON object.

use std::hint::black_box;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use wharf_server::metrics::{Metrics, MetricsOptions};

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let m = Metrics::new(MetricsOptions::default());
    // A few repositories, so the label lookups are not one cache line.
    let repos: Vec<String> = (0..50).map(|i| format!("bench/repo{i}")).collect();
    let n = 1_000_000;
    let response = |status| {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        r
    };
    let mut i = 0usize;
    let mut case = |method: &Method, route: &'static str, status: StatusCode, record: bool| {
        i += 1;
        let mut r = response(status);
        let started = Instant::now();
        if record {
            m.record(
                method,
                route,
                Some(&repos[i % repos.len()]),
                &mut r,
                started,
            );
        }
        black_box(r);
    };
    let base_get = per_op(n, || case(&Method::GET, "manifest", StatusCode::OK, false));
    let get = per_op(n, || case(&Method::GET, "manifest", StatusCode::OK, true));
    let base_put = per_op(n, || {
        case(&Method::PUT, "manifest", StatusCode::CREATED, false)
    });
    let put = per_op(n, || {
        case(&Method::PUT, "manifest", StatusCode::CREATED, true)
    });
    println!(
        "{{\"manifest_get_ns\": {:.0}, \"manifest_put_ns\": {:.0}}}",
        (get - base_get).max(0.0),
        (put - base_put).max(0.0)
    );
}
