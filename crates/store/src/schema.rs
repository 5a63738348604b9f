//! Schema versions, shared by the metadata backends: each keeps a list of migrations, and a
//! database is at the version of the last one applied.

use crate::{Result, StoreError};

/// Where a database stands relative to this binary's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersions {
    pub before: usize,
    pub after: usize,
}

impl SchemaVersions {
    /// The versions for a database found at `found` by a binary that knows `known`
    /// migrations. A database migrated by a newer Wharf is refused rather than misread.
    pub fn check(what: &str, found: usize, known: usize) -> Result<SchemaVersions> {
        if found > known {
            return Err(StoreError::Database(format!(
                "{what} has schema version {found}, newer than this Wharf knows ({known}); \
                 upgrade Wharf"
            )));
        }
        Ok(SchemaVersions {
            before: found,
            after: known,
        })
    }

    /// The migrations still to apply, as indexes into the backend's list.
    pub fn pending(&self) -> std::ops::Range<usize> {
        self.before..self.after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_databases_are_refused() {
        let v = SchemaVersions::check("db", 1, 3).unwrap();
        assert_eq!(v.pending(), 1..3);
        assert!(SchemaVersions::check("db", 3, 3)
            .unwrap()
            .pending()
            .is_empty());
        let e = SchemaVersions::check("the database", 4, 3).unwrap_err();
        assert!(
            e.to_string().contains("newer than this Wharf knows (3)"),
            "{e}"
        );
    }
}
