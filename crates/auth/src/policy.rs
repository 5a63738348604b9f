//! Who may do what: actions, repository patterns, policies, and the rights an identity has on
//! a repository. Pure logic, no I/O.

use std::fmt;

/// The rights a request can need on a repository. `overwrite` is its own right: pushing a
/// tag that already points at another manifest, so tags can be protected per team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const OVERWRITE: Actions = Actions(8);
    pub const ALL: Actions = Actions(15);

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }
    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses action names: `pull`, `push`, `delete`, `overwrite`, `*` (all).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Actions, String> {
        let mut a = Actions::NONE;
        for n in names {
            a = a.union(match n.trim() {
                "pull" => Actions::PULL,
                "push" => Actions::PUSH,
                "delete" => Actions::DELETE,
                "overwrite" => Actions::OVERWRITE,
                "*" => Actions::ALL,
                other => {
                    return Err(format!(
                        "unknown action {other:?} (pull, push, delete, overwrite or *)"
                    ))
                }
            });
        }
        Ok(a)
    }

    /// The names, in the order the token scope grammar uses.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Actions::PULL, "pull"),
            (Actions::PUSH, "push"),
            (Actions::DELETE, "delete"),
            (Actions::OVERWRITE, "overwrite"),
        ]
        .into_iter()
        .filter(|(a, _)| self.contains(*a))
        .map(|(_, n)| n)
        .collect()
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

pub use wharf_oci::Pattern;

/// One rule: these subjects may do these actions on these repositories.
#[derive(Debug, Clone)]
pub struct Policy {
    pub repositories: Vec<Pattern>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Applies to everyone, signed in or not (public read).
    pub anonymous: bool,
    pub actions: Actions,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Anonymous,
    User {
        name: String,
        groups: Vec<String>,
    },
    /// An API key carries its own grants instead of the policies.
    ApiKey {
        name: String,
        grants: Vec<(Pattern, Actions)>,
    },
}

impl Subject {
    /// How the subject is named in tokens (`sub`) and logs.
    pub fn id(&self) -> String {
        match self {
            Subject::Anonymous => String::new(),
            Subject::User { name, .. } => name.clone(),
            Subject::ApiKey { name, .. } => format!("apikey:{name}"),
        }
    }
}

/// The policies of a registry.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub policies: Vec<Policy>,
    pub admins: Vec<String>,
}

impl Policies {
    pub fn is_admin(&self, s: &Subject) -> bool {
        match s {
            Subject::User { name, groups } => self.admins.iter().any(|a| {
                a == name
                    || a.strip_prefix("group:")
                        .is_some_and(|g| groups.iter().any(|x| x == g))
            }),
            _ => false,
        }
    }

    /// Everything `s` may do on `repository`.
    pub fn rights(&self, s: &Subject, repository: &str) -> Actions {
        if self.is_admin(s) {
            return Actions::ALL;
        }
        let public = self
            .policies
            .iter()
            .filter(|p| p.anonymous && p.repositories.iter().any(|r| r.matches(repository)))
            .fold(Actions::NONE, |a, p| a.union(p.actions));
        if let Subject::ApiKey { grants, .. } = s {
            // A key's own grants, plus what everyone may do.
            return grants
                .iter()
                .filter(|(p, _)| p.matches(repository))
                .fold(public, |a, (_, g)| a.union(*g));
        }
        self.policies
            .iter()
            .filter(|p| p.repositories.iter().any(|r| r.matches(repository)))
            .filter(|p| {
                p.anonymous
                    || match s {
                        Subject::User { name, groups } => {
                            p.users.iter().any(|u| u == name || u == "*")
                                || p.groups.iter().any(|g| groups.contains(g))
                        }
                        _ => false,
                    }
            })
            .fold(Actions::NONE, |a, p| a.union(p.actions))
    }

    /// Whether any repository is open to anonymous callers.
    pub fn has_anonymous_access(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.anonymous && !p.actions.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Pattern {
        Pattern::new(p).unwrap()
    }

    #[test]
    fn globs() {
        assert!(pat("team/*").matches("team/app"));
        assert!(!pat("team/*").matches("team/a/b"));
        assert!(pat("team/**").matches("team/a/b"));
        assert!(pat("**").matches("anything/at/all"));
        assert!(pat("*/app").matches("x/app"));
        assert!(!pat("*/app").matches("x/y/app"));
        assert!(pat("exact").matches("exact"));
        assert!(!pat("exact").matches("exactly"));
        assert!(pat("pre*fix").matches("pre-and-fix"));
        assert!(Pattern::new("").is_err() && Pattern::new("a/***").is_err());
    }

    #[test]
    fn actions() {
        let a = Actions::parse(["pull", "push"]).unwrap();
        assert!(a.contains(Actions::PULL) && !a.contains(Actions::DELETE));
        assert_eq!(a.to_string(), "pull,push");
        assert_eq!(Actions::parse(["*"]).unwrap(), Actions::ALL);
        assert!(Actions::parse(["fly"]).is_err());
    }

    #[test]
    fn rights() {
        let p = Policies {
            policies: vec![
                Policy {
                    repositories: vec![pat("public/**")],
                    users: vec![],
                    groups: vec![],
                    anonymous: true,
                    actions: Actions::PULL,
                },
                Policy {
                    repositories: vec![pat("team/*")],
                    users: vec!["bob".into()],
                    groups: vec!["devs".into()],
                    anonymous: false,
                    actions: Actions::parse(["pull", "push"]).unwrap(),
                },
            ],
            admins: vec!["root".into(), "group:ops".into()],
        };
        let user = |n: &str, g: &[&str]| Subject::User {
            name: n.into(),
            groups: g.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(p.rights(&Subject::Anonymous, "public/x"), Actions::PULL);
        assert_eq!(p.rights(&Subject::Anonymous, "team/app"), Actions::NONE);
        assert!(p
            .rights(&user("bob", &[]), "team/app")
            .contains(Actions::PUSH));
        assert!(!p
            .rights(&user("bob", &[]), "team/app")
            .contains(Actions::OVERWRITE));
        assert!(p
            .rights(&user("eve", &["devs"]), "team/app")
            .contains(Actions::PUSH));
        assert_eq!(p.rights(&user("eve", &[]), "team/app"), Actions::NONE);
        assert_eq!(p.rights(&user("eve", &[]), "public/y"), Actions::PULL);
        assert_eq!(p.rights(&user("root", &[]), "any/thing"), Actions::ALL);
        assert_eq!(p.rights(&user("x", &["ops"]), "any/thing"), Actions::ALL);
        let key = Subject::ApiKey {
            name: "ci".into(),
            grants: vec![(pat("team/*"), Actions::PULL)],
        };
        assert_eq!(p.rights(&key, "team/app"), Actions::PULL);
        assert_eq!(
            p.rights(&key, "public/x"),
            Actions::PULL,
            "keys get public read too"
        );
        assert_eq!(
            p.rights(&key, "other/x"),
            Actions::NONE,
            "and nothing of other policies"
        );
        assert!(p.has_anonymous_access());
    }
}
