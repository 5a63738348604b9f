//! Turns a request path into the endpoint it names. Repository names may contain `/` and even
//! path segments such as `blobs` or `manifests`, so endpoints are recognised from the end.

use wharf_oci::{validate_repository, ErrorCode};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags {
        name: String,
    },
    Manifest {
        name: String,
        reference: String,
    },
    Blob {
        name: String,
        digest: String,
    },
    UploadStart {
        name: String,
    },
    Upload {
        name: String,
        id: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
    /// `/v2/_oci/ext/discover`: the extensions this registry offers.
    Extensions,
    /// `/v2/_wharf/ext/search`: artifacts across repositories.
    Search,
    /// `/v2/_wharf/gc`: a garbage collection pass, on demand (admins).
    GarbageCollection,
    /// `/v2/<name>/_wharf/artifacts`: a repository's artifacts with what the index knows.
    Artifacts {
        name: String,
    },
}

impl Route {
    /// Parses `path`; the repository name is validated, the last segment is left to the handler.
    pub fn parse(path: &str) -> Result<Route, ApiError> {
        let not_found = || {
            ApiError::new(ErrorCode::Unsupported, format!("no endpoint at {path}"))
                .with_status(axum::http::StatusCode::NOT_FOUND)
        };
        let rest = match path.strip_prefix("/v2") {
            Some("") | Some("/") => return Ok(Route::Base),
            Some(r) => r.strip_prefix('/').ok_or_else(not_found)?,
            None => return Err(not_found()),
        };
        match rest {
            "_catalog" => return Ok(Route::Catalog),
            "_oci/ext/discover" => return Ok(Route::Extensions),
            "_wharf/ext/search" => return Ok(Route::Search),
            "_wharf/gc" => return Ok(Route::GarbageCollection),
            _ => {}
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<String, ApiError> {
            if k == 0 {
                return Err(not_found());
            }
            let name = segs[..k].join("/");
            validate_repository(&name)?;
            Ok(name)
        };
        if n >= 3 && segs[n - 2] == "_wharf" && segs[n - 1] == "artifacts" {
            return Ok(Route::Artifacts {
                name: name_of(n - 2)?,
            });
        }
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Ok(Route::Tags {
                name: name_of(n - 2)?,
            });
        }
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let name = name_of(n - 3)?;
            return Ok(match segs[n - 1] {
                "" => Route::UploadStart { name },
                id => Route::Upload {
                    name,
                    id: id.to_string(),
                },
            });
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Ok(Route::UploadStart {
                name: name_of(n - 2)?,
            });
        }
        if n >= 3 && !segs[n - 1].is_empty() {
            let last = segs[n - 1].to_string();
            match segs[n - 2] {
                "manifests" => {
                    return Ok(Route::Manifest {
                        name: name_of(n - 2)?,
                        reference: last,
                    })
                }
                "blobs" => {
                    return Ok(Route::Blob {
                        name: name_of(n - 2)?,
                        digest: last,
                    })
                }
                "referrers" => {
                    return Ok(Route::Referrers {
                        name: name_of(n - 2)?,
                        digest: last,
                    })
                }
                _ => {}
            }
        }
        Err(not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Route {
        Route::parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.message()))
    }

    #[test]
    fn endpoints() {
        assert_eq!(p("/v2/"), Route::Base);
        assert_eq!(p("/v2"), Route::Base);
        assert_eq!(p("/v2/_catalog"), Route::Catalog);
        assert_eq!(p("/v2/_oci/ext/discover"), Route::Extensions);
        assert_eq!(p("/v2/_wharf/ext/search"), Route::Search);
        assert_eq!(p("/v2/_wharf/gc"), Route::GarbageCollection);
        assert_eq!(
            p("/v2/a/b/_wharf/artifacts"),
            Route::Artifacts { name: "a/b".into() }
        );
        assert_eq!(p("/v2/a/b/tags/list"), Route::Tags { name: "a/b".into() });
        assert_eq!(
            p("/v2/a/manifests/latest"),
            Route::Manifest {
                name: "a".into(),
                reference: "latest".into()
            }
        );
        assert_eq!(
            p("/v2/x/manifests/y/manifests/z"),
            Route::Manifest {
                name: "x/manifests/y".into(),
                reference: "z".into()
            }
        );
        assert_eq!(
            p("/v2/a/blobs/uploads/"),
            Route::UploadStart { name: "a".into() }
        );
        assert_eq!(
            p("/v2/a/blobs/uploads"),
            Route::UploadStart { name: "a".into() }
        );
        assert_eq!(
            p("/v2/a/blobs/uploads/123"),
            Route::Upload {
                name: "a".into(),
                id: "123".into()
            }
        );
        assert_eq!(
            p("/v2/a/blobs/sha256:00"),
            Route::Blob {
                name: "a".into(),
                digest: "sha256:00".into()
            }
        );
        assert_eq!(
            p("/v2/blobs/blobs/d"),
            Route::Blob {
                name: "blobs".into(),
                digest: "d".into()
            }
        );
        assert_eq!(
            p("/v2/r/referrers/sha256:00"),
            Route::Referrers {
                name: "r".into(),
                digest: "sha256:00".into()
            }
        );
    }

    #[test]
    fn rejects() {
        for (path, code) in [
            ("/v1/", ErrorCode::Unsupported),
            ("/v2/manifests/x", ErrorCode::Unsupported),
            ("/v2/a/unknown/x", ErrorCode::Unsupported),
            ("/v2/A/manifests/x", ErrorCode::NameInvalid),
            ("/v2/a//b/manifests/x", ErrorCode::NameInvalid),
            ("/v2/a/../b/manifests/x", ErrorCode::NameInvalid),
            ("/v2/a/manifests/", ErrorCode::Unsupported),
        ] {
            let e = Route::parse(path).unwrap_err();
            assert_eq!(e.code(), code, "{path}");
        }
    }
}
