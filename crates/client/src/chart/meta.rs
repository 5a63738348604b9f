//! `Chart.yaml` as helm reads it, and the JSON helm writes of it: the chart's OCI config blob
//! and the inputs of `Chart.lock`'s digest. Both are compared byte for byte by other tools
//! (a config digest, a lock digest), so the JSON follows Go's `encoding/json` exactly: field
//! order of helm's structs, empty fields left out, `<`, `>` and `&` escaped.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// Chart.yaml's fields, in the order of helm's `chart.Metadata`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChartMeta {
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub home: String,
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<Maintainer>,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub icon: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub condition: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub tags: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub app_version: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub kube_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub chart_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Maintainer {
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub email: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub url: String,
}

/// A dependency, in the order of helm's `chart.Dependency` (name and repository are always
/// written, as helm writes them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dependency {
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
    #[serde(default, deserialize_with = "scalar")]
    pub repository: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub condition: String,
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    #[serde(
        rename = "import-values",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub import_values: Vec<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub alias: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A YAML scalar as helm's loader sees it in a string field: `appVersion: 1.10` is "1.10"
/// to a person, so numbers keep their written form where YAML allows; null is empty.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_yaml_ng::Value::deserialize(d)?;
    Ok(match v {
        serde_yaml_ng::Value::Null => String::new(),
        serde_yaml_ng::Value::String(s) => s,
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        _ => return Err(serde::de::Error::custom("expected a string")),
    })
}

fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Option::<Vec<serde_yaml_ng::Value>>::deserialize(d)?;
    v.unwrap_or_default()
        .into_iter()
        .map(|v| match v {
            serde_yaml_ng::Value::String(s) => Ok(s),
            serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
            serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
            _ => Err(serde::de::Error::custom("expected a list of strings")),
        })
        .collect()
}

/// The dependencies of an apiVersion v1 chart live in `requirements.yaml`.
#[derive(Debug, Default, Deserialize)]
struct Requirements {
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

impl ChartMeta {
    /// Parses `Chart.yaml` (and, for apiVersion v1, `requirements.yaml`) and validates it as
    /// `helm package` does, with a stricter version: SemVer 2, as OCI tags need.
    pub fn parse(chart_yaml: &[u8], requirements: Option<&[u8]>) -> Result<ChartMeta> {
        let mut m: ChartMeta = serde_yaml_ng::from_slice(chart_yaml)
            .map_err(|e| Error::Invalid(format!("Chart.yaml: {e}")))?;
        if m.api_version.is_empty() {
            m.api_version = "v1".into();
        }
        if let (Some(req), "v1") = (requirements, m.api_version.as_str()) {
            let r: Requirements = serde_yaml_ng::from_slice(req)
                .map_err(|e| Error::Invalid(format!("requirements.yaml: {e}")))?;
            m.dependencies = r.dependencies;
        }
        m.validate()?;
        Ok(m)
    }

    /// Reads and validates the chart in directory `dir`.
    pub fn load_dir(dir: &std::path::Path) -> Result<ChartMeta> {
        let chart_yaml = dir.join("Chart.yaml");
        let yaml = std::fs::read(&chart_yaml).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Invalid(format!(
                "{} has no Chart.yaml: not a chart directory",
                dir.display()
            )),
            _ => Error::file(&chart_yaml, e),
        })?;
        let req = std::fs::read(dir.join("requirements.yaml")).ok();
        ChartMeta::parse(&yaml, req.as_deref())
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("Chart.yaml: {why}")));
        if !matches!(self.api_version.as_str(), "v1" | "v2") {
            return bad(format!(
                "apiVersion {:?} is neither v1 nor v2",
                self.api_version
            ));
        }
        if self.name.is_empty() {
            return bad("name is required".into());
        }
        if !valid_name(&self.name) {
            return bad(format!(
                "name {:?} must be lower-case letters, digits, '-', '_' or '.', starting with a letter or digit",
                self.name
            ));
        }
        if self.version.is_empty() {
            return bad("version is required".into());
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            return bad(format!(
                "version {:?} is not SemVer 2 (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]): {e}",
                self.version
            ));
        }
        if !matches!(self.chart_type.as_str(), "" | "application" | "library") {
            return bad(format!(
                "type {:?} is neither application nor library",
                self.chart_type
            ));
        }
        for d in &self.dependencies {
            if d.name.is_empty() {
                return bad("a dependency has no name".into());
            }
            if !d.alias.is_empty() && !valid_name(&d.alias) {
                return bad(format!(
                    "dependency alias {:?} is not a valid name",
                    d.alias
                ));
            }
            if !d.version.is_empty() {
                crate::chart::Constraint::parse(&d.version).map_err(|e| {
                    Error::Invalid(format!("Chart.yaml: dependency {}: {e}", d.name))
                })?;
            }
        }
        Ok(())
    }

    /// The chart's OCI config blob: `json.Marshal(chart.Metadata)`, as `helm push` writes it.
    pub fn config_json(&self) -> Vec<u8> {
        go_json(self)
    }

    /// `NAME-VERSION.tgz`, the file name helm gives a packaged chart.
    pub fn archive_name(&self) -> String {
        format!("{}-{}.tgz", self.name, self.version)
    }

    /// The `org.opencontainers.image.*` annotations `helm push` derives from the chart,
    /// then the chart's own annotations (which cannot override those).
    pub fn oci_annotations(&self, created: &str) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.trim().is_empty() {
                a.insert(format!("org.opencontainers.image.{k}"), v.to_string());
            }
        };
        put("description", &self.description);
        put("title", &self.name);
        put("version", &self.version);
        put("url", &self.home);
        put("created", created);
        if let Some(s) = self.sources.first() {
            put("source", s);
        }
        if !self.maintainers.is_empty() {
            let authors = self
                .maintainers
                .iter()
                .map(|m| match m.email.is_empty() {
                    true => m.name.clone(),
                    false => format!("{} ({})", m.name, m.email),
                })
                .collect::<Vec<_>>()
                .join(", ");
            put("authors", &authors);
        }
        const FIXED: [&str; 4] = ["title", "version", "created", "description"];
        for (k, v) in &self.annotations {
            let fixed = k
                .strip_prefix("org.opencontainers.image.")
                .is_some_and(|s| FIXED.contains(&s));
            if !fixed {
                a.insert(k.clone(), v.clone());
            }
        }
        a
    }
}

/// Helm's chart-name rule, as `helm create` and `helm package` apply it.
fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The tag a chart version is stored under: OCI tags have no `+`, so helm writes `_`.
pub fn version_to_tag(version: &str) -> String {
    version.replace('+', "_")
}

/// The chart version a tag stands for (`_` back to `+`), if it is SemVer.
pub fn tag_to_version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(&tag.replace('_', "+")).ok()
}

/// Serialises like Go's `encoding/json`: compact, and HTML-sensitive characters escaped.
pub fn go_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string(v).expect("serialising plain data");
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = r#"
apiVersion: v2
name: demo
description: A <demo> & more
version: 1.2.3+build.1
appVersion: 1.10
keywords: [web, demo]
home: https://example.com
sources: [https://github.com/example/demo]
maintainers:
  - name: Ann
    email: ann@example.com
  - name: Bob
annotations:
  category: Web
  org.opencontainers.image.title: ignored
dependencies:
  - name: redis
    version: ^17.0.0
    repository: oci://localhost:5000/charts
"#;

    #[test]
    fn config_json_is_gos() {
        let m = ChartMeta::parse(CHART.as_bytes(), None).unwrap();
        assert_eq!(
            m.app_version, "1.1",
            "YAML reads 1.10 as a number; helm does too"
        );
        let json = String::from_utf8(m.config_json()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"name":"demo","home":"https://example.com","sources":["https://github.com/example/demo"],"#,
                r#""version":"1.2.3+build.1","description":"A \u003cdemo\u003e \u0026 more","keywords":["web","demo"],"#,
                r#""maintainers":[{"name":"Ann","email":"ann@example.com"},{"name":"Bob"}],"apiVersion":"v2","#,
                r#""appVersion":"1.1","annotations":{"category":"Web","org.opencontainers.image.title":"ignored"},"#,
                r#""dependencies":[{"name":"redis","version":"^17.0.0","repository":"oci://localhost:5000/charts"}]}"#
            )
        );
    }

    #[test]
    fn annotations_are_helms() {
        let m = ChartMeta::parse(CHART.as_bytes(), None).unwrap();
        let a = m.oci_annotations("2026-01-01T00:00:00Z");
        assert_eq!(a["org.opencontainers.image.title"], "demo");
        assert_eq!(
            a["org.opencontainers.image.authors"],
            "Ann (ann@example.com), Bob"
        );
        assert_eq!(
            a["org.opencontainers.image.source"],
            "https://github.com/example/demo"
        );
        assert_eq!(a["category"], "Web");
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn validation_refuses_what_helm_refuses() {
        for (yaml, why) in [
            ("name: x\nversion: 1.0.0\napiVersion: v3", "apiVersion"),
            ("version: 1.0.0\napiVersion: v2", "name is required"),
            ("name: x\napiVersion: v2", "version is required"),
            ("name: x\nversion: 1.0\napiVersion: v2", "SemVer"),
            ("name: x\nversion: v1.0.0\napiVersion: v2", "SemVer"),
            ("name: ../x\nversion: 1.0.0\napiVersion: v2", "name"),
            ("name: x\nversion: 1.0.0\napiVersion: v2\ntype: app", "type"),
            (
                "name: x\nversion: 1.0.0\napiVersion: v2\ndependencies: [{name: y, version: '>>1'}]",
                "dependency y",
            ),
            ("name: [x", "Chart.yaml"),
        ] {
            let e = ChartMeta::parse(yaml.as_bytes(), None).unwrap_err().to_string();
            assert!(e.contains(why), "{yaml}: {e}");
        }
    }

    #[test]
    fn v1_dependencies_come_from_requirements() {
        let m = ChartMeta::parse(
            b"name: old\nversion: 0.1.0",
            Some(b"dependencies:\n- name: a\n  version: 1.x\n  repository: oci://r/x\n"),
        )
        .unwrap();
        assert_eq!((m.api_version.as_str(), m.dependencies.len()), ("v1", 1));
    }

    #[test]
    fn tags_and_versions() {
        assert_eq!(version_to_tag("1.2.3+build.1"), "1.2.3_build.1");
        assert_eq!(
            tag_to_version("1.2.3_build.1").unwrap().to_string(),
            "1.2.3+build.1"
        );
        assert!(tag_to_version("latest").is_none());
    }
}
