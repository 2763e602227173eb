//! The real host facts, read through sysinfo: OS, kernel, CPUs, memory, free disk
//! on the filesystem that holds the managed binaries, uptime and load.

use std::path::{Path, PathBuf};

use sysinfo::{Disks, System};
use upkeep_common::api::{HostFacts, LoadAverage};

use crate::host::HostFactsSource;

/// Reads facts about the machine the agent runs on.
#[derive(Debug, Clone)]
pub struct SystemFacts {
    disk_path: PathBuf,
}

impl SystemFacts {
    /// Facts with free disk measured on the filesystem holding `disk_path`.
    pub fn new(disk_path: PathBuf) -> Self {
        Self { disk_path }
    }
}

impl HostFactsSource for SystemFacts {
    fn facts(&self) -> HostFacts {
        let (memory_total_bytes, memory_available_bytes, cpus) = match System::new() {
            Ok(mut system) => {
                system.refresh_memory();
                (system.total_memory(), system.available_memory(), cpu_count())
            }
            Err(_) => (0, 0, cpu_count()),
        };
        let load = System::load_average().unwrap_or(sysinfo::LoadAvg { one: 0.0, five: 0.0, fifteen: 0.0 });
        HostFacts {
            arch: upkeep_common::api::kubernetes_arch().to_owned(),
            os: System::long_os_version().unwrap_or_else(|_| "unknown".to_owned()),
            kernel: System::kernel_version().unwrap_or_else(|_| "unknown".to_owned()),
            cpus,
            memory_total_bytes,
            memory_available_bytes,
            disk_path: self.disk_path.display().to_string(),
            disk_free_bytes: free_bytes_on(&self.disk_path),
            uptime_seconds: System::uptime().unwrap_or(0),
            load: LoadAverage { one: load.one, five: load.five, fifteen: load.fifteen },
        }
    }
}

fn cpu_count() -> u32 {
    std::thread::available_parallelism().map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX)).unwrap_or(1)
}

/// Free bytes on the mounted filesystem with the longest mount point that
/// contains `path`.
fn free_bytes_on(path: &Path) -> Option<u64> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let disks = Disks::new_with_refreshed_list().ok()?;
    disks
        .iter()
        .filter(|disk| path.starts_with(disk.mount_point()))
        .max_by_key(|disk| disk.mount_point().as_os_str().len())
        .map(|disk| disk.available_space())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_facts() {
        let facts = SystemFacts::new(PathBuf::from("/")).facts();
        assert!(facts.cpus >= 1);
        assert!(facts.memory_total_bytes > 0);
        assert!(facts.memory_available_bytes <= facts.memory_total_bytes);
        assert!(!facts.kernel.is_empty());
        assert!(facts.disk_free_bytes.is_some(), "the root filesystem has a free-space figure");
    }
}
