//! Reading a signature policy file, for `wharf verify --policy` and `wharf serve
//! --pull-policy`: key paths in it are relative to the file.

use std::path::Path;

use wharf_sign::policy::Policy;

/// The policy at `path`, its keys read; one line saying what is wrong otherwise.
pub fn load(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    Policy::parse(&text, |k| {
        std::fs::read_to_string(base.join(k)).map_err(|e| e.to_string())
    })
    .map_err(|e| format!("{}: {e}", path.display()))
}
