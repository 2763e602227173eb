//! Fake components: shell scripts that answer `--version` like kubelet does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes an executable script at `dir/name` that prints `Kubernetes VERSION`
/// for `--version` and exits 0 otherwise.
pub fn write(dir: &Path, name: &str, version: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\n# fake {name} for upkeep tests\nif [ \"$1\" = \"--version\" ]; then echo \"Kubernetes {version}\"; fi\nexit 0\n"
    );
    std::fs::write(&path, script).expect("write fake component");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake component");
    path
}
