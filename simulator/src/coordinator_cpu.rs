//! The coordinator on threads of its own, so the CPU it spends is measured
//! apart from the fake agents sharing the process: its runtime's threads are
//! named [`THREAD_NAME`], and their CPU time is read from `/proc/self/task`.

use std::future::Future;

/// The name of the coordinator runtime's threads.
pub const THREAD_NAME: &str = "coordinator";

/// Runs `job` on a runtime of its own (two worker threads named
/// [`THREAD_NAME`], where every task the job spawns also runs) and returns its
/// output with the CPU milliseconds those threads spent.
pub async fn run_measured<T: Send + 'static>(
    job: impl Future<Output = T> + Send + 'static,
) -> std::io::Result<(T, f64)> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(THREAD_NAME).enable_all().build()?;
    let before = cpu_ms_of_threads(THREAD_NAME);
    let output = runtime.spawn(job).await.map_err(std::io::Error::other)?;
    let spent = cpu_ms_of_threads(THREAD_NAME) - before;
    runtime.shutdown_background();
    Ok((output, spent.max(0.0)))
}

/// The CPU milliseconds (user and system) spent by this process's live threads named `name`.
pub fn cpu_ms_of_threads(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm")).is_ok_and(|comm| comm.trim_end() == name);
        if named {
            ticks += std::fs::read_to_string(path.join("stat")).ok().as_deref().map_or(0, cpu_ticks);
        }
    }
    ticks as f64 * 1000.0 / TICKS_PER_SECOND
}

/// Linux reports thread CPU time in USER_HZ ticks, which its ABI fixes at 100 a second.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system ticks from a `/proc/.../stat` line (fields 14 and 15,
/// counted after the parenthesised name, which may hold spaces).
fn cpu_ticks(stat: &str) -> u64 {
    let Some((_, after_name)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name come the state (field 3) and onwards: utime is field 14, stime field 15.
    let field = |number: usize| fields.get(number - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks_past_a_name_with_spaces() {
        let stat = "4242 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 1200 34 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), 1234);
        assert_eq!(cpu_ticks("garbage"), 0);
    }

    #[tokio::test]
    async fn a_busy_job_on_the_coordinator_threads_is_measured() {
        let ((), spent) = run_measured(async {
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(300) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            std::hint::black_box(x);
        })
        .await
        .expect("runs");
        assert!(spent > 0.0, "a job that spun for 300 ms spent {spent} ms of CPU");
    }
}
